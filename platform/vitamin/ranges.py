"""HTTP byte ranges (RFC 9110 §14): the one `Range` a download serves, or the whole file."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.http import StreamingHttpResponse

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


def file_response(
    file: BinaryIO,
    part: ByteRange | None,
    size: int,
    *,
    content_type: str,
    filename: str | None = None,
    on_close: Callable[[int], None] | None = None,
):
    """An open file as the answer: whole (200), or the one range asked for (206 with Content-Range),
    streamed in chunks (never the whole file in memory); the response closes the file.

    `on_close(sent)` is called once when the response is closed (by the server after its last write, or
    when the client went away), with the bytes of the file the server took to write: a download charged
    in advance gives back the rest (a client that reads the headers of a whole-file answer and drops it,
    as some readers do to learn a file's size, was sent only what the connection's buffers took)."""
    start, length = (0, size) if part is None else (part.start, part.length)
    response = StreamingHttpResponse(
        _FileBody(file, start, length, on_close), status=200 if part is None else 206, content_type=content_type
    )
    response["Content-Length"] = str(length)
    if part is not None:
        response["Content-Range"] = f"bytes {part.start}-{part.end}/{size}"
    if filename is not None:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Accept-Ranges"] = "bytes"
    return response


class _FileBody:
    """`length` bytes of a file from `start`, in chunks, counting what the server took; closing it (as Django
    does with a response, read to its end or not) closes the file and reports the count.

    A chunk counts as sent once the server has taken it, even if its write then fails: part of it may have
    reached the client before the connection broke, and a count that left it out would let a client that
    hangs up mid-chunk on purpose read up to a chunk of every download for free. So the count is never less
    than what the client received; it is more by what the connection's buffers held and at most one chunk.
    Not `FileResponse`: with the server's sendfile nobody could tell how much of the file left."""

    def __init__(self, file: BinaryIO, start: int, length: int, on_close: Callable[[int], None] | None):
        self.file, self.on_close = file, on_close
        self.left, self.sent, self._closed = length, 0, False
        file.seek(start)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.left <= 0 or self._closed:
            raise StopIteration
        chunk = self.file.read(min(_CHUNK_BYTES, self.left))
        if not chunk:
            raise StopIteration
        self.left -= len(chunk)
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.file.close()
        if self.on_close is not None:
            self.on_close(self.sent)
