"""HTTP byte ranges (RFC 9110 §14): the one `Range` a download serves, or the whole file."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vitamin.errors import ApiError


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


# At most 19 digits (any file size fits): a longer number is malformed, never a 500.
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})", re.ASCII | re.IGNORECASE)


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range` header asks for (RFC 9110 §14), or None for the whole file.

    A header this server does not serve (several ranges, other units, a malformed one) is
    ignored, as the RFC allows: the whole file. A range wholly past the end is
    416 range_not_satisfiable.
    """
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "" or size == 0:
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            start = size  # nothing: not satisfiable
    else:
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
        if last != "" and int(last) < start:
            return None  # invalid: ignored
    if start >= size:
        raise ApiError(
            f"The range starts past the end of the {size}-byte result.",
            code="range_not_satisfiable",
            status_code=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    return ByteRange(start, end)
