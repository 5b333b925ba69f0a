"""Event frames as Arrow tables, the form in which events cross Ray's object store.

A pickled DataFrame is copied whole into the store and out again; an Arrow table is a set of
column buffers, which Ray places in shared memory and a worker on the same node maps without a
copy. The round trip keeps every column's dtype (categories as dictionaries, UTC nanosecond
timestamps, the `str` columns of pandas 3), so the graphs built from the table equal those
built from the frame (tests/test_execution_arrow.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def to_table(events: "pd.DataFrame") -> "pa.Table":
    import pyarrow as pa

    return pa.Table.from_pandas(events, preserve_index=False)


def to_frame(table: "pa.Table", dtypes: "pd.Series | None" = None) -> "pd.DataFrame":
    """The frame of `table`; with `dtypes` (the original frame's), columns whose dtype Arrow
    does not name alike are restored: object columns value by value (a None stays None, not
    NaN), the others cast back."""
    import pandas as pd

    frame = table.to_pandas()
    if dtypes is not None:
        for name, dtype in dtypes.items():
            if frame[name].dtype == dtype:
                continue
            if dtype == object:
                frame[name] = pd.Series(table.column(name).to_pylist(), dtype=object, index=frame.index)
            else:
                frame[name] = frame[name].astype(dtype)
    return frame


def runs_of_events(events: "pd.DataFrame", bounds: list[tuple[int, int]]) -> list["pd.DataFrame"]:
    """The events of each [start, end) of `bounds` (epoch nanoseconds), from a frame sorted by
    `@timestamp` (as every source returns it)."""
    import numpy as np

    stamps = events["@timestamp"].array.asi8
    cuts = [(int(np.searchsorted(stamps, a)), int(np.searchsorted(stamps, b))) for a, b in bounds]
    return [events.iloc[i:j].reset_index(drop=True) for i, j in cuts]
