"""Fast ways to turn numpy arrays into Arrow arrays: fixed-width ASCII strings, lookups into small string tables,
and numeric buffers reinterpreted as dates and timestamps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

ASCII_ZERO = ord("0")


def ascii_digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as an (n, width) array of ASCII digit codes, zero-padded. For small lookup tables."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(values, dtype=np.int64)[:, None] // powers) % 10 + ASCII_ZERO).astype(np.uint8)


def fixed_width_strings(codes: np.ndarray) -> pa.StringArray:
    """An (n, width) array of ASCII codes as n strings of `width` characters, without a copy per value."""
    rows, width = codes.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(codes, dtype=np.uint8)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))


def string_table(values: Sequence[str]) -> pa.StringArray:
    return pa.array(list(values), type=pa.string())


def lookup(table: pa.Array, indices: np.ndarray) -> pa.Array:
    """`table[indices]` as a plain (not dictionary-encoded) array: a dictionary decode, the fastest take here."""
    codes = pa.array(np.ascontiguousarray(indices, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(codes, table).cast(table.type)


def from_buffer(arrow_type: pa.DataType, values: np.ndarray, numpy_dtype: type) -> pa.Array:
    """Reinterpret a numpy array as an Arrow array of `arrow_type` (days for date32, epoch units for timestamps)."""
    values = np.ascontiguousarray(values, dtype=numpy_dtype)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def dates(days_since_epoch: np.ndarray) -> pa.Array:
    return from_buffer(pa.date32(), days_since_epoch, np.int32)


def round_cents(values: np.ndarray) -> np.ndarray:
    return np.round(values, 2)
