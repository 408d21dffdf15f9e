"""The http_json connector against a live HTTP server on 127.0.0.1: pagination, retries, errors, tokens."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from connectors import ConnectorError, OptionsError, get_connector

RECORDS = [{"id": i, "merchant": f"商户{i}", "amount": round(i * 1.5, 2)} for i in range(250)]
TOKEN = "test-token-9f8e7d"


class Request(NamedTuple):
    query: dict[str, str]
    hit: int  # 1 for the first request to this path
    authorization: str | None


class ApiServer:
    """A small JSON API with the behaviours the connector must handle, recording every request."""

    def __init__(self, other_origin: str = "http://127.0.0.1:9"):
        self.other_origin = other_origin
        self.hits: Counter[str] = Counter()
        self.authorizations: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                server.hits[url.path] += 1
                server.authorizations.append(self.headers.get("Authorization"))
                route = getattr(server, "route_" + url.path.strip("/").replace("-", "_"), None)
                request = Request(query, server.hits[url.path], self.headers.get("Authorization"))
                status, body, headers = route(request) if route else (404, {"error": "no"}, {})
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except BrokenPipeError:  # the client gave up (the timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def route_paged(self, request):
        page, size = int(request.query["page"]), int(request.query["page_size"])
        return 200, {"data": {"items": RECORDS[(page - 1) * size : page * size]}}, {}

    def route_linked(self, request):
        cursor = int(request.query.get("cursor", 0))
        following = f"/linked?cursor={cursor + 100}" if cursor + 100 < len(RECORDS) else None
        return 200, {"results": RECORDS[cursor : cursor + 100], "links": {"next": following}}, {}

    def route_flaky(self, request):
        return (503, {"error": "busy"}, {}) if request.hit == 1 else (200, RECORDS[:5], {})

    def route_throttled(self, request):
        return (429, {"error": "slow down"}, {"Retry-After": "2"}) if request.hit == 1 else (200, RECORDS[:5], {})

    def route_down(self, request):
        return 503, {"error": "down"}, {}

    def route_slow(self, request):
        time.sleep(1.0)
        return 200, RECORDS[:5], {}

    def route_private(self, request):
        granted = request.authorization == f"Bearer {TOKEN}"
        return (200, RECORDS[:3], {}) if granted else (401, {"error": "unauthorized"}, {})

    def route_escape(self, request):
        return 200, {"results": RECORDS[:2], "links": {"next": f"{self.other_origin}/linked"}}, {}

    def route_mixed(self, request):
        return 200, [{"id": 1, "amount": 2.5}, {"id": "two", "amount": None}], {}


@pytest.fixture(scope="module")
def api():
    other = ApiServer()
    server = ApiServer(other_origin=other.url)
    server.other = other
    yield server
    server.close()
    other.close()


def connector(options: dict, batch_rows: int = 65_536, sleeps: list | None = None):
    made = get_connector("http_json", options, batch_rows=batch_rows)
    made.sleep = sleeps.append if sleeps is not None else lambda seconds: None
    return made


def read(made) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    return made.schema(), list(made.batches())


def test_page_pagination_streams_every_record_in_bounded_batches(api):
    made = connector(
        {"url": f"{api.url}/paged", "records_path": "data.items", "pagination": "page", "page_size": 100}, batch_rows=64
    )
    schema, batches = read(made)
    assert all(0 < batch.num_rows <= 64 for batch in batches)
    assert all(batch.schema == schema for batch in batches)
    assert pa.Table.from_batches(batches).to_pylist() == RECORDS
    assert schema == pa.schema([("id", pa.int64()), ("merchant", pa.string()), ("amount", pa.float64())])


def test_next_link_pagination_follows_relative_links(api):
    options = {
        "url": f"{api.url}/linked",
        "records_path": "results",
        "pagination": "next_link",
        "next_link_path": "links.next",
    }
    before = api.hits["/linked"]
    _, batches = read(connector(options))
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(250))
    assert api.hits["/linked"] - before == 4  # one page to infer the schema, then three pages


def test_declared_schema(api):
    options = {
        "url": f"{api.url}/linked",
        "records_path": "results",
        "columns": {"id": "int32", "amount": "decimal128(10, 2)"},
    }
    schema, batches = read(connector(options))
    assert schema == pa.schema([("id", pa.int32()), ("amount", pa.decimal128(10, 2))])
    assert batches[0].schema == schema and batches[0].num_rows == 100


def test_a_transient_503_is_retried_with_backoff(api):
    sleeps = []
    options = {"url": f"{api.url}/flaky", "columns": {"id": "int64"}, "backoff_seconds": 0.25}
    _, batches = read(connector(options, sleeps=sleeps))
    assert batches[0].column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert api.hits["/flaky"] == 2
    assert sleeps == [0.25]


def test_retry_after_is_respected(api):
    sleeps = []
    _, batches = read(connector({"url": f"{api.url}/throttled", "columns": {"id": "int64"}}, sleeps=sleeps))
    assert batches[0].num_rows == 5
    assert sleeps == [2.0]


def test_a_persistent_5xx_gives_up_as_transient_after_exponential_backoff(api):
    sleeps = []
    options = {"url": f"{api.url}/down", "columns": {"id": "int64"}, "max_retries": 3, "backoff_seconds": 0.1}
    with pytest.raises(ConnectorError, match="HTTP 503") as error:
        read(connector(options, sleeps=sleeps))
    assert error.value.transient
    assert api.hits["/down"] == 4
    assert sleeps == [0.1, 0.2, 0.4]


def test_a_404_is_permanent_and_not_retried(api):
    with pytest.raises(ConnectorError, match="HTTP 404") as error:
        read(connector({"url": f"{api.url}/missing?api_key=abc", "max_retries": 3}))
    assert not error.value.transient
    assert api.hits["/missing"] == 1
    assert "abc" not in str(error.value)  # query strings may hold keys


def test_a_timeout_is_transient(api):
    options = {"url": f"{api.url}/slow", "columns": {"id": "int64"}, "timeout_seconds": 0.2, "max_retries": 0}
    with pytest.raises(ConnectorError, match="timed out") as error:
        read(connector(options))
    assert error.value.transient


def test_a_closed_port_is_transient():
    with pytest.raises(ConnectorError, match="connection failed") as error:
        read(connector({"url": "http://127.0.0.1:9/none", "max_retries": 1}))
    assert error.value.transient


def test_the_bearer_token_comes_from_env_or_file_only(api, monkeypatch, tmp_path):
    with pytest.raises(ConnectorError, match="HTTP 401"):
        read(connector({"url": f"{api.url}/private"}))
    monkeypatch.setenv("VITAMIN_TEST_API_TOKEN", TOKEN)
    _, batches = read(connector({"url": f"{api.url}/private", "token_env": "VITAMIN_TEST_API_TOKEN"}))
    assert batches[0].num_rows == 3
    (tmp_path / "token").write_text(TOKEN + "\n")
    _, batches = read(connector({"url": f"{api.url}/private", "token_file": str(tmp_path / "token")}))
    assert batches[0].num_rows == 3
    for inline in ({"token": TOKEN}, {"headers": {"Authorization": f"Bearer {TOKEN}"}}):
        with pytest.raises(OptionsError) as error:
            get_connector("http_json", {"url": f"{api.url}/private", **inline})
        assert TOKEN not in str(error.value)


def test_the_token_never_follows_a_link_to_another_host(api, monkeypatch):
    monkeypatch.setenv("VITAMIN_TEST_API_TOKEN", TOKEN)
    options = {
        "url": f"{api.url}/escape",
        "records_path": "results",
        "pagination": "next_link",
        "next_link_path": "links.next",
        "token_env": "VITAMIN_TEST_API_TOKEN",
    }
    with pytest.raises(ConnectorError, match="next link leaves"):
        read(connector(options))
    assert api.other.hits["/linked"] == 0
    assert f"Bearer {TOKEN}" not in api.other.authorizations


def test_records_that_do_not_fit_the_schema_and_bad_paths(api):
    with pytest.raises(ConnectorError, match="declare `columns`"):
        read(connector({"url": f"{api.url}/mixed"}))
    with pytest.raises(ConnectorError, match="nothing at 'data.nope'"):
        read(connector({"url": f"{api.url}/paged?page=1&page_size=5", "records_path": "data.nope"}))


def test_every_option_problem_is_reported_at_once():
    with pytest.raises(OptionsError) as error:
        get_connector(
            "http_json",
            {
                "url": "ftp://user:pw@example.com/x",
                "pagination": "cursor",
                "timeout_seconds": 0,
                "max_retries": -1,
                "headers": {"Cookie": "session=1", "X-Count": 3},
                "columns": {"id": "int"},
            },
        )
    fields = [field for field, _ in error.value.problems]
    assert set(fields) == {
        "url",
        "pagination",
        "timeout_seconds",
        "max_retries",
        "headers.Cookie",
        "headers.X-Count",
        "columns.id",
    }
