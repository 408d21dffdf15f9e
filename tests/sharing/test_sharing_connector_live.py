"""The unmodified `delta-sharing` connector (its own virtualenv) against a live server, with both profile kinds."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from catalog_support import approved, bearer_token, make_client, publish_table
from sharing_support import run_client

from audit.models import AuditEvent
from datasets.spec import Mode
from datasets.storage import Store
from quotas.service import Window, peek
from sharing.profiles import profile

pytestmark = pytest.mark.slow

TABLE = "vitamin.industry_indicators.industry_prosperity_monthly"


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, [Mode.QUERY, Mode.DOWNLOAD])


@pytest.fixture(params=[1, 2])
def profile_document(request, live_server, fund, subscription):
    client, _ = make_client(fund, name=f"Lake loader v{request.param}")
    document = profile(client, version=request.param)
    document["endpoint"] = f"{live_server.url}/delta-sharing/"
    if "tokenEndpoint" in document:
        document["tokenEndpoint"] = f"{live_server.url}/oauth/token"
    return document


def rows(table) -> list[tuple]:
    """A table's rows as text, in a stable order: what must be equal whatever the reader's types."""
    return sorted(tuple(str(value) for value in row.values()) for row in table.to_pylist())


def published(catalog, store_url, number: int = 1):
    version = catalog.industry.versions.get(number=number)
    store = Store.from_url(store_url)
    return pa.concat_tables(pq.read_table(store.path(version.location, entry["path"])) for entry in version.files)


LOAD = """
import json, os, tempfile
import delta_sharing
client = delta_sharing.SharingClient(PROFILE)
tables = [f"{t.share}.{t.schema}.{t.name}" for t in client.list_all_tables()]
url = f"{PROFILE}#{TABLE}"
frame = delta_sharing.load_as_pandas(url)
limited = delta_sharing.load_as_pandas(url, limit=2)
pinned = delta_sharing.load_as_pandas(url, version=1)
out = os.path.join(tempfile.mkdtemp(), "frame.parquet")
frame.to_parquet(out)
print(json.dumps({
    "tables": tables,
    "path": out,
    "limited": len(limited),
    "pinned": len(pinned),
    "version": delta_sharing.get_table_version(url),
    "columns": [field["name"] for field in json.loads(delta_sharing.get_table_metadata(url).schema_string)["fields"]],
}))
"""


def test_the_connector_lists_loads_and_time_travels(profile_document, catalog, store_url):
    result = run_client(LOAD.replace("TABLE", repr(TABLE)), profile=profile_document)
    assert result["tables"] == [TABLE]
    assert result["version"] == 1 and result["pinned"] == 6 and result["limited"] >= 2
    expected = published(catalog, store_url)
    loaded = pq.read_table(result["path"]).select(expected.column_names)
    assert expected.column_names == result["columns"]
    assert rows(loaded) == rows(expected) and loaded.num_rows == 6


def test_a_table_not_granted_is_invisible_to_the_connector(live_server, fund, catalog, plan):
    approved(fund, catalog.industry, plan, [Mode.QUERY])  # no download mode
    client, _ = make_client(fund, name="No downloads")
    document = profile(client, version=1)
    document["endpoint"] = f"{live_server.url}/delta-sharing/"
    code = """
import json, delta_sharing
print(json.dumps([t.name for t in delta_sharing.SharingClient(PROFILE).list_all_tables()]))
"""
    assert run_client(code, profile=document) == []


def test_a_client_that_hangs_up_after_the_headers_is_charged_what_was_sent(live_server, fund, subscription, store_url):
    """What fsspec does to learn a file's size: a whole-file GET, the headers read, the connection dropped.
    Over real HTTP the server notices only when its writes fail; it is charged the whole before the first
    byte, and must then give back what never left."""
    rng = np.random.default_rng(7)
    rows = 2_500_000  # random doubles: about 40 MB that no compression shrinks, more than any socket buffer
    table = pa.table({"gmv": rng.random(rows), "orders": rng.integers(0, 2**62, rows)})
    version = publish_table(subscription.dataset, table, store_url)
    size = version.files[0]["size_bytes"]
    token = bearer_token(fund, scopes="download")
    listed = requests.post(
        f"{live_server.url}/delta-sharing/shares/vitamin/schemas/industry_indicators/tables/"
        "industry_prosperity_monthly/query",
        json={"version": version.number},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    (url,) = [json.loads(line)["file"]["url"] for line in listed.text.splitlines() if '"file"' in line]
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(f"GET {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += connection.recv(4096)
        assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {size}".encode() in head
    deadline = time.monotonic() + 30
    while not (cut := AuditEvent.objects.filter(action="sharing.download_incomplete").first()):
        assert time.monotonic() < deadline, "the server never gave back the unsent part"
        time.sleep(0.1)
    charged = AuditEvent.objects.get(action="sharing.download", outcome="success")
    assert charged.details["bytes"] == cut.details["charged"] == size
    assert cut.details["bytes"] + cut.details["refunded"] == size and cut.details["bytes"] < size // 2
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == cut.details["bytes"]
