"""HTTP byte ranges (RFC 9110 §14): the one `Range` a download serves, or the whole file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.http import FileResponse, StreamingHttpResponse

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


_CHUNK_BYTES = 1 << 20


def file_response(file: BinaryIO, part: ByteRange | None, size: int, *, content_type: str, filename: str | None = None):
    """An open file as the answer: whole (200), or the one range asked for (206 with Content-Range),
    streamed in chunks (never the whole file in memory); the response closes the file."""
    if part is None:
        response = FileResponse(
            file, content_type=content_type, as_attachment=filename is not None, filename=filename or ""
        )
        response["Content-Length"] = str(size)
        response.block_size = _CHUNK_BYTES  # when the server has no sendfile (gunicorn has): 1 MiB, not 4 KiB
    else:
        response = StreamingHttpResponse(_RangeReader(file, part), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {part.start}-{part.end}/{size}"
        response["Content-Length"] = str(part.length)
        if filename is not None:
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Accept-Ranges"] = "bytes"
    return response


class _RangeReader:
    """The bytes of one range of a file, in chunks; closing it (as Django does with a response,
    read or not) closes the file."""

    def __init__(self, file: BinaryIO, part: ByteRange, chunk_bytes: int = 1 << 20):
        self.file, self.part, self.chunk_bytes = file, part, chunk_bytes

    def __iter__(self) -> Iterator[bytes]:
        self.file.seek(self.part.start)
        left = self.part.length
        while left > 0:
            chunk = self.file.read(min(self.chunk_bytes, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self.file.close()
