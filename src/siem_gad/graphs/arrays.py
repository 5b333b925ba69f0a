"""Array helpers shared by the graph builders: integer codes for entity columns, numbering of
distinct keys, float32 stacking, log scaling, timestamps as integers and address features.

They are public so that every builder (and a plugin's) uses the same fast paths: codes
without hashing where a categorical or small integer column allows it, and one compiled pass
over a dense slot array (see `kernels`) instead of a hash table.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..lazy import lazy_import

np = lazy_import("numpy")

if TYPE_CHECKING:
    import pandas as pd


def stack32(columns: list[np.ndarray]) -> np.ndarray:
    """Columns -> one float32 matrix (filled column by column, without a float64 copy)."""
    out = np.empty((len(columns[0]), len(columns)), dtype=np.float32)
    for i, column in enumerate(columns):
        out[:, i] = column
    return out


def log_scale(features: np.ndarray, keep: tuple[int, ...]) -> np.ndarray:
    """log1p of every column but those in `keep`, in place (one contiguous pass is several
    times faster than column by column)."""
    kept = features[:, list(keep)].copy()
    np.log1p(features, out=features)
    features[:, list(keep)] = kept
    return features


def nanoseconds(stamps: "pd.Series") -> np.ndarray:
    """Epoch nanoseconds of a datetime column of any resolution (pandas 3 parses to us or s)."""
    if getattr(stamps.dt, "unit", "ns") != "ns":
        stamps = stamps.dt.as_unit("ns")
    return stamps.array.asi8


def codes(column: "pd.Series", native: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the values they stand for; no hashing for categoricals.

    Codes are int64, or with `native` a categorical's own narrow integers (no copy; for kernels,
    not for arithmetic that could overflow them).
    """
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        return codes if native else codes.astype(np.int64), np.asarray(column.cat.categories, dtype=object)
    codes, values = pd.factorize(column, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(values, dtype=object)


DENSE_LIMIT = 1 << 24  # slot-array entries (int64: 128 MiB at most); beyond it, hash


def group_ids(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct values of `keys` (all in [0, size)) in order of first occurrence.

    Returns (id of each element, the distinct keys by id): one compiled pass over a dense slot
    array within the dense limit, hashing (pandas) beyond it.
    """
    import pandas as pd

    if size > DENSE_LIMIT:
        codes, uniques = pd.factorize(keys)
        return codes.astype(np.int64), uniques.astype(np.int64)
    from . import kernels

    return kernels.dense_ids(np.ascontiguousarray(keys, dtype=np.int64), size)


def small_int_codes(column: "pd.Series") -> tuple[np.ndarray, np.ndarray]:
    """Codes for a column of ports and similar small non-negative integers, without hashing."""
    import pandas as pd

    if not isinstance(column.dtype, pd.CategoricalDtype) and pd.api.types.is_integer_dtype(column.dtype):
        values = column.to_numpy()
        if len(values) and values.min() >= 0 and values.max() < 1 << 17:
            return group_ids(values.astype(np.int64), int(values.max()) + 1)
    return codes(column)


def address_info(value: object, bits: bool) -> list[float]:
    """[private] (+ 16 bits of the last two octets): zeros for values that are not addresses."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return [0.0] * (17 if bits else 1)
    info = [float(address.is_private)]
    if bits:
        low = int(address) & 0xFFFF
        info += [float((low >> (15 - b)) & 1) for b in range(16)]
    return info
