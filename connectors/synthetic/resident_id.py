"""PRC resident identity numbers (GB 11643-1999): check characters and validation, scalar and vectorized.

An ID number is 18 characters: a 6-digit administrative division code, the
birth date as YYYYMMDD, a 3-digit sequence (odd for men, even for women) and a
check character computed with ISO 7064 MOD 11-2 over the first 17 digits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
CHECK_CHARS = "10X98765432"  # indexed by (weighted digit sum) mod 11
CHECK_CHAR_CODES = np.frombuffer(CHECK_CHARS.encode(), dtype=np.uint8)


def resident_id_check_char(first17: str) -> str:
    """The check character for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("expected exactly 17 digits")
    return CHECK_CHARS[sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS.tolist(), strict=True)) % 11]


def check_char_codes(digits: np.ndarray) -> np.ndarray:
    """Vectorized core: an (n, 17) array of digit values 0-9 -> n ASCII codes of the check characters."""
    return CHECK_CHAR_CODES[(digits.astype(np.int64) @ WEIGHTS) % 11]


def _fixed_width_bytes(values: pa.Array, width: int) -> np.ndarray:
    """The bytes of a string array whose values all have `width` bytes, as an (n, width) uint8 view."""
    values = values.cast(pa.string())
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[-1]].reshape(len(values), width)


def resident_id_check_chars(first17: pa.Array | Sequence[str]) -> pa.StringArray:
    """Vectorized `resident_id_check_char`: the check character of each 17-digit prefix."""
    first17 = pa.array(first17, type=pa.string()) if not isinstance(first17, pa.Array) else first17
    if first17.null_count or not pc.all(pc.match_substring_regex(first17, r"^[0-9]{17}$")).as_py():
        raise ValueError("every value must be exactly 17 digits")
    codes = check_char_codes(_fixed_width_bytes(first17, 17) - ord("0"))
    offsets = np.arange(len(codes) + 1, dtype=np.int32)
    return pa.StringArray.from_buffers(len(codes), pa.py_buffer(offsets), pa.py_buffer(codes.tobytes()))


def is_valid_resident_id(value: object) -> bool:
    """True for an 18-character ID number with a real birth date and the right check character."""
    if not isinstance(value, str) or len(value) != 18 or not value.isascii():
        return False
    first17, check = value[:17], value[17].upper()
    if not first17.isdigit():
        return False
    try:
        dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return resident_id_check_char(first17) == check


def valid_resident_id_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Vectorized `is_valid_resident_id` over a string array: one bool per value (nulls are invalid)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    well_formed = pc.fill_null(pc.match_substring_regex(values, r"^[0-9]{17}[0-9Xx]$"), False)
    mask = well_formed.to_numpy(zero_copy_only=False)
    if not mask.any():
        return mask
    candidates = values.filter(well_formed)
    birth = pc.strptime(pc.utf8_slice_codeunits(candidates, 6, 14), format="%Y%m%d", unit="s", error_is_null=True)
    digits = _fixed_width_bytes(candidates, 18)
    check = np.where(digits[:, 17] == ord("x"), ord("X"), digits[:, 17])
    correct_check = check_char_codes(digits[:, :17] - ord("0")) == check
    mask[mask] = correct_check & pc.is_valid(birth).to_numpy(zero_copy_only=False)
    return mask
