"""Timestamp parsing for text sources: ISO 8601, epoch seconds/ms/us/ns, strftime formats.

Values that do not parse become NaT; the caller quarantines those rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EPOCH_UNITS = {"epoch_s": "s", "epoch_ms": "ms", "epoch_us": "us", "epoch_ns": "ns"}
FORMATS = ("auto", "iso", *EPOCH_UNITS)


def check_format(value: str) -> str:
    if value in FORMATS or "%" in value:
        return value
    raise ValueError(f"expected one of {', '.join(FORMATS)} or a strftime pattern such as '%d/%m/%Y %H:%M:%S', got {value!r}")


def _epoch_unit(numbers: "pd.Series") -> str:
    magnitude = numbers.abs().median()
    if magnitude > 1e17:
        return "ns"
    if magnitude > 1e14:
        return "us"
    if magnitude > 1e11:
        return "ms"
    return "s"


def parse_timestamps(values: "pd.Series", fmt: str = "auto", timezone: str = "UTC") -> "pd.Series":
    """Parse a column of strings to datetime64[ns, UTC]; naive times are read in `timezone`."""
    import pandas as pd

    text = values.astype("string").str.strip()
    if fmt in EPOCH_UNITS or fmt == "auto":
        numbers = pd.to_numeric(text, errors="coerce")
        if fmt in EPOCH_UNITS or (numbers.notna().sum() > 0 and numbers.notna().sum() >= text.notna().sum()):
            unit = EPOCH_UNITS.get(fmt) or _epoch_unit(numbers.dropna())
            return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    kwargs = {"format": "ISO8601"} if fmt in ("auto", "iso") else {"format": fmt}
    if timezone == "UTC":
        return pd.to_datetime(text, utc=True, errors="coerce", **kwargs)
    # Mixed input: values with an offset keep it; naive values are in the configured zone.
    aware = pd.to_datetime(text, utc=True, errors="coerce", **kwargs)
    has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
    naive = pd.to_datetime(text.where(~has_offset), errors="coerce", **kwargs)
    if isinstance(naive.dtype, pd.DatetimeTZDtype):
        naive = naive.dt.tz_convert("UTC")
    else:
        naive = local_to_utc(naive, timezone)
    return aware.where(has_offset, naive)


def local_to_utc(naive: "pd.Series", timezone: str) -> "pd.Series":
    """Naive local times in `timezone` as UTC. The hour that clocks go back through occurs twice
    and reads as its first occurrence; a time that clocks skip reads as if they had not moved
    yet (Python's `fold=0`, as the syslog source reads local stamps). pandas would refuse both,
    and the hour's events would be quarantined every year."""
    from zoneinfo import ZoneInfo

    import pandas as pd

    local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    unresolved = local.isna() & naive.notna()
    if unresolved.any():
        zone = ZoneInfo(timezone)
        times = naive[unresolved]
        offsets = pd.to_timedelta([zone.utcoffset(t.to_pydatetime(warn=False)) for t in times], unit="ns")
        local[unresolved] = (times - offsets).dt.tz_localize("UTC").to_numpy()
    return local
