"""Events are pandas DataFrames with ECS dotted column names.

Sources map their native fields to these names. `@timestamp` is tz-aware UTC and every event
has an `event.id`: alerts point back at their evidence through it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TIMESTAMP = "@timestamp"
EVENT_ID = "event.id"

# The columns built-in graph builders and detectors know about. Others are kept as they are.
ECS_FIELDS = (
    TIMESTAMP, EVENT_ID, "event.action", "event.outcome", "event.category",
    "source.ip", "source.port", "destination.ip", "destination.port",
    "user.name", "host.name", "network.transport", "network.bytes", "labels.attack",
)


NUMERIC_FIELDS = ("source.port", "destination.port", "network.bytes", "network.packets", "source.bytes",
                  "source.packets", "destination.packets",
                  "destination.bytes", "event.duration", "process.pid")


# Entity and low-cardinality fields are stored as pandas Categoricals: each string is hashed
# once when a source reads it, and graph builders work on the integer codes.
CATEGORICAL_FIELDS = ("source.ip", "destination.ip", "user.name", "host.name", "event.action",
                      "event.outcome", "event.category", "network.transport")


def empty_events() -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"), EVENT_ID: pd.Series([], dtype=object)})


def finalize_events(events: "pd.DataFrame", source_name: str) -> "pd.DataFrame":
    """Ensure a UTC `@timestamp` and an `event.id` on every row, sorted by time.

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
        if name in events.columns and not pd.api.types.is_numeric_dtype(events[name].dtype):
            events[name] = pd.to_numeric(events[name], errors="coerce")
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
