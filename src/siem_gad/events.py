"""Events are pandas DataFrames with ECS dotted column names.

Sources map their native fields to these names. `@timestamp` is tz-aware UTC and every event
has an `event.id`: alerts point back at their evidence through it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

TIMESTAMP = "@timestamp"
EVENT_ID = "event.id"

# The columns built-in graph builders and detectors know about. Others are kept as they are.
ECS_FIELDS = (
    TIMESTAMP, EVENT_ID, "event.action", "event.outcome", "event.category",
    "source.ip", "source.port", "destination.ip", "destination.port",
    "user.name", "host.name", "network.transport", "network.bytes", "labels.attack",
)


# The numeric fields and the values each can take. A value outside its range (a negative byte
# count, a port of 70000, "inf", a number past float range) is malformed: the CSV source
# quarantines its row, and `finalize_events` reads it as missing for every other source.
COUNT_RANGE = (0.0, 2.0 ** 53)
NUMERIC_RANGES = {"source.port": (0.0, 65535.0), "destination.port": (0.0, 65535.0), "network.bytes": COUNT_RANGE,
                  "network.packets": COUNT_RANGE, "source.bytes": COUNT_RANGE, "source.packets": COUNT_RANGE,
                  "destination.packets": COUNT_RANGE, "destination.bytes": COUNT_RANGE,
                  "event.duration": (0.0, 2.0 ** 63), "process.pid": (0.0, 2.0 ** 32)}
NUMERIC_FIELDS = tuple(NUMERIC_RANGES)
# What files write for "no value" in a numeric column (Zeek writes "-"): missing, not malformed.
MISSING_MARKERS = frozenset({"", "-", "(empty)", "nan", "NaN", "null", "None", "N/A"})


# Entity and low-cardinality fields are stored as pandas Categoricals: each string is hashed
# once when a source reads it, and graph builders work on the integer codes.
CATEGORICAL_FIELDS = ("source.ip", "destination.ip", "user.name", "host.name", "event.action",
                      "event.outcome", "event.category", "network.transport")


def malformed_numbers(values: "pd.Series", field: str) -> "tuple[pd.Series, np.ndarray]":
    """`values` (text or numbers) as numbers, and the mask of the malformed ones: present, not a
    missing marker, and not a number in `field`'s range (`NUMERIC_RANGES`)."""
    import numpy as np
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(values.dtype)
    numbers = values if numeric else pd.to_numeric(values, errors="coerce")
    low, high = NUMERIC_RANGES[field]
    present = values.notna().to_numpy().copy()
    unparsed = np.flatnonzero(present & numbers.isna().to_numpy())
    if len(unparsed) and not numeric:  # only text that is no number can be a missing marker
        present[unparsed[values.iloc[unparsed].astype(str).str.strip().isin(MISSING_MARKERS).to_numpy()]] = False
    in_range = numbers.between(low, high).to_numpy()  # NaN and inf are outside every range
    return numbers, present & ~in_range


def empty_events() -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"), EVENT_ID: pd.Series([], dtype=object)})


def finalize_events(events: "pd.DataFrame", source_name: str) -> "pd.DataFrame":
    """Ensure a UTC `@timestamp` and an `event.id` on every row, sorted by time, and numeric
    fields that hold numbers in their range or nothing (`NUMERIC_RANGES`: a value outside is read
    as missing, with a warning naming the field).

    Rows without an id get a deterministic one (a hash of the source name and the row's
    values), so that a repeated read of the same data yields the same ids.
    """
    import pandas as pd

    if TIMESTAMP not in events.columns:
        raise ValueError(f"source {source_name!r} produced events without a {TIMESTAMP!r} column")
    stamps = events[TIMESTAMP]
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        events[TIMESTAMP] = pd.to_datetime(stamps, utc=True)
    elif str(stamps.dtype.tz) != "UTC":
        events[TIMESTAMP] = stamps.dt.tz_convert("UTC")
    if events[TIMESTAMP].dt.unit != "ns":  # one resolution everywhere (pandas 3 may parse to us or s)
        events[TIMESTAMP] = events[TIMESTAMP].dt.as_unit("ns")
    for name in NUMERIC_FIELDS:
        if name in events.columns:
            numbers, bad = malformed_numbers(events[name], name)
            if bad.any():
                first = events[name].to_numpy()[bad.argmax()]
                first = first.item() if hasattr(first, "item") else first  # a numpy scalar as Python shows it
                log.warning("source %s: %d values of %s outside %s..%s read as missing (first: %r)", source_name,
                            int(bad.sum()), name, *(f"{v:,.0f}" for v in NUMERIC_RANGES[name]), first)
                numbers = numbers.astype("float64").mask(bad)
            events[name] = numbers
    for name in CATEGORICAL_FIELDS:
        if name in events.columns and not isinstance(events[name].dtype, pd.CategoricalDtype):
            events[name] = events[name].astype("category")
    if EVENT_ID not in events.columns:
        events[EVENT_ID] = None
    missing = events[EVENT_ID].isna()
    if missing.any():
        # pandas 3 keeps a missing value missing through astype(str): write it as pandas 2 did
        rows = events.loc[missing].drop(columns=[EVENT_ID]).astype(str).fillna("nan")
        joined = rows.apply(lambda r: "\x1f".join(r.values), axis=1) if len(rows) else rows
        events.loc[missing, EVENT_ID] = [
            f"{source_name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}" for text in joined
        ]
    if events[TIMESTAMP].is_monotonic_increasing:  # most sources deliver in time order: no copy
        return events.reset_index(drop=True)
    return events.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
