"""File answers (`vitamin.ranges.file_response`): the bytes asked for, and a count of what was sent.

A download is charged before its first byte and given back what was not sent, so the count must never be
less than what the client could have received: every chunk the server took counts, the one whose write
failed too (part of it may have arrived), and nothing it did not take.
"""

from __future__ import annotations

import io

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitamin import ranges
from vitamin.ranges import ByteRange, file_response


class Recording(io.BytesIO):
    closed_count = 0

    def close(self) -> None:
        self.closed_count += 1
        super().close()


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(ranges, "_CHUNK_BYTES", 7)


@pytest.fixture(autouse=True)
def without_a_database():
    """A response's close ends its request, which tidies database connections: these tests have none."""
    request_finished.disconnect(close_old_connections)
    yield
    request_finished.connect(close_old_connections)


def answer(data: bytes, part: ByteRange | None):
    file, counts = Recording(data), []
    response = file_response(file, part, len(data), content_type="application/octet-stream", on_close=counts.append)
    return response, file, counts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=120),
    bounds=st.none() | st.tuples(st.integers(0, 130), st.integers(0, 130)),
    taken=st.integers(0, 25),
)
def test_the_count_is_every_byte_the_server_took_and_no_more(small_chunks, data, bounds, taken):
    part = None
    if bounds is not None and data:
        start = min(bounds[0], len(data) - 1)
        part = ByteRange(start, min(max(bounds[1], start), len(data) - 1))
    response, file, counts = answer(data, part)
    expected = data if part is None else data[part.start : part.end + 1]
    assert response.status_code == (200 if part is None else 206)
    assert int(response["Content-Length"]) == len(expected)
    body = iter(response.streaming_content)
    chunks = []
    for _ in range(taken):  # the server takes `taken` chunks (the write of the last may fail)
        chunk = next(body, None)
        if chunk is None:
            break
        chunks.append(chunk)
    response.close()  # the server is done: the body ended, or the client went away
    response.close()
    assert b"".join(chunks) == expected[: sum(map(len, chunks))]  # the right bytes, in order
    assert counts == [sum(map(len, chunks))]  # reported once: what the server took, its last chunk included
    assert counts[0] <= len(expected) and file.closed


def test_a_whole_body_read_to_its_end_counts_every_byte(small_chunks):
    data = bytes(range(256)) * 3
    response, _, counts = answer(data, None)
    assert b"".join(response.streaming_content) == data
    response.close()
    assert counts == [len(data)]


def test_a_client_gone_before_the_body_is_counted_as_sent_nothing(small_chunks):
    response, file, counts = answer(b"x" * 100, None)
    response.close()  # no chunk was taken: the server failed before the body
    assert counts == [0] and file.closed


def test_a_client_gone_mid_chunk_is_counted_that_chunk(small_chunks):
    response, _, counts = answer(b"x" * 100, None)
    body = iter(response.streaming_content)
    next(body), next(body)  # the second chunk's write failed part way: some of it may have arrived
    response.close()
    assert counts == [14]


def test_a_range_and_a_download_name_are_described_in_the_headers():
    data = b"0123456789"
    response, _, counts = answer(data, ByteRange(2, 5))
    assert response["Content-Range"] == "bytes 2-5/10" and response["Accept-Ranges"] == "bytes"
    assert b"".join(response.streaming_content) == b"2345"
    response.close()
    assert counts == [4]
    named = file_response(io.BytesIO(data), None, 10, content_type="text/csv", filename="result.csv")
    assert named["Content-Disposition"] == 'attachment; filename="result.csv"'
