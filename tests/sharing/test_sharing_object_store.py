"""Delta Sharing on an S3-compatible store: files come straight from the store through pre-signed URLs."""

from __future__ import annotations

import io
import json

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import requests
from catalog_support import approved, auth, bearer_token, industry_table

from audit.models import AuditEvent
from datasets.spec import Mode
from quotas.service import Window, peek

TABLE = "/delta-sharing/shares/vitamin/schemas/industry_indicators/tables/industry_prosperity_monthly"


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] provides the local S3-compatible server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def test_a_query_on_an_object_store_hands_out_presigned_urls_charged_at_once(
    client, fund, catalog, plan, settings, s3_endpoint, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "vitamin-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vitamin-test-secret")
    subscription = approved(fund, catalog.industry, plan, [Mode.QUERY, Mode.DOWNLOAD])
    s3 = pafs.S3FileSystem(
        access_key="vitamin-test", secret_key="vitamin-test-secret", endpoint_override=s3_endpoint,
        scheme="http", region="us-east-1", allow_bucket_creation=True,
    )  # fmt: skip
    s3.create_dir("vitamin-store")
    version = catalog.industry.versions.get(number=1)
    (entry,) = version.files
    sink = io.BytesIO()
    pq.write_table(industry_table(), sink)
    with s3.open_output_stream(f"vitamin-store/{version.location}/{entry['path']}") as out:
        out.write(sink.getvalue())
    version.files = [{**entry, "size_bytes": len(sink.getvalue())}]
    version.save()
    settings.STORE_URL = f"s3://vitamin-store?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"

    token = bearer_token(fund, scopes="download")
    answer = client.post(f"{TABLE}/query", {}, content_type="application/json", **auth(token))
    assert answer.status_code == 200, answer.content
    (file,) = [json.loads(line)["file"] for line in answer.content.decode().splitlines()[2:]]
    assert file["url"].startswith(f"http://{s3_endpoint}/vitamin-store/") and "X-Amz-Signature=" in file["url"]
    fetched = requests.get(file["url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == sink.getvalue()
    assert pq.read_table(io.BytesIO(fetched.content)).num_rows == json.loads(file["stats"])["numRecords"] == 6
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == file["size"]
    event = AuditEvent.objects.get(action="sharing.download")
    assert event.details["presigned"] is True and event.details["bytes"] == file["size"]
