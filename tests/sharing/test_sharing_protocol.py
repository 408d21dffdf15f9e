"""The Delta Sharing endpoints over Django's test client: mapping, versions, files, and every refusal."""

from __future__ import annotations

import io
import json
import time

import pyarrow.parquet as pq
import pytest
from catalog_support import approved, auth, bearer_token, close_as_a_server_does
from django.core.management import call_command
from django.utils.timezone import now as time_now

from access import subscriptions
from audit.models import AuditEvent
from datasets.spec import Mode
from quotas.service import Window, peek
from sharing import files

BASE = "/delta-sharing"
TABLE = f"{BASE}/shares/vitamin/schemas/industry_indicators/tables/industry_prosperity_monthly"


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, [Mode.QUERY, Mode.DOWNLOAD])


@pytest.fixture
def token(fund, subscription):
    return bearer_token(fund, scopes="download")


def get(client, path, token, **params):
    return client.get(path, params, **auth(token))


def ndjson(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return [json.loads(line) for line in response.content.decode().splitlines() if line]


def query(client, token, **body):
    return client.post(f"{TABLE}/query", body, content_type="application/json", **auth(token))


def file_path(url: str) -> str:
    return url.split("testserver", 1)[-1]


def test_the_share_schemas_and_tables_are_what_the_institution_may_download(client, token, fund):
    shares = get(client, f"{BASE}/shares", token).json()
    assert [share["name"] for share in shares["items"]] == ["vitamin"]
    assert get(client, f"{BASE}/shares/vitamin", token).json()["share"]["name"] == "vitamin"
    schemas = get(client, f"{BASE}/shares/vitamin/schemas", token).json()["items"]
    assert schemas == [{"name": "industry_indicators", "share": "vitamin"}]
    tables = get(client, f"{BASE}/shares/vitamin/all-tables", token).json()["items"]
    assert [(t["schema"], t["name"]) for t in tables] == [("industry_indicators", "industry_prosperity_monthly")]
    listed = get(client, f"{BASE}/shares/vitamin/schemas/industry_indicators/tables", token).json()["items"]
    assert listed == tables


def test_a_dataset_not_granted_for_download_does_not_exist(client, fund, catalog, plan):
    approved(fund, catalog.cards, plan, [Mode.QUERY])  # query only; card_transactions is aggregate anyway
    token = bearer_token(fund, scopes="download")
    assert get(client, f"{BASE}/shares/vitamin/all-tables", token).json()["items"] == []
    for path in (
        f"{BASE}/shares/vitamin/schemas/consumption/tables",
        f"{BASE}/shares/vitamin/schemas/consumption/tables/card_transactions/version",
        f"{BASE}/shares/vitamin/schemas/industry_indicators/tables/industry_prosperity_monthly/metadata",
        f"{BASE}/shares/other",
        f"{BASE}/nowhere",
    ):
        response = get(client, path, token)
        assert response.status_code == 404, path
        assert response.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST", path


def test_the_download_scope_and_a_token_are_required(client, fund, subscription):
    assert client.get(f"{BASE}/shares").json()["errorCode"] == "UNAUTHENTICATED"
    query_only = bearer_token(fund, scopes="query")
    refused = get(client, f"{BASE}/shares", query_only)
    assert refused.status_code == 403 and refused.json()["errorCode"] == "PERMISSION_DENIED"


def test_version_and_metadata_describe_the_published_version(client, token, catalog):
    version = get(client, f"{TABLE}/version", token)
    assert version.status_code == 200 and version["Delta-Table-Version"] == "1"
    lines = ndjson(get(client, f"{TABLE}/metadata", token))
    assert lines[0] == {"protocol": {"minReaderVersion": 1}}
    meta = lines[1]["metaData"]
    fields = [field["name"] for field in json.loads(meta["schemaString"])["fields"]]
    assert fields[:3] == ["csi_industry", "month", "gmv"] and meta["format"]["provider"] == "parquet"


def test_a_query_lists_signed_urls_that_serve_the_published_bytes(client, token, catalog, store_url):
    lines = ndjson(query(client, token))
    (entry,) = [line["file"] for line in lines[2:]]
    assert json.loads(entry["stats"])["numRecords"] == 6 and entry["expirationTimestamp"] > time.time() * 1000
    whole = client.get(file_path(entry["url"]))
    body = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and len(body) == entry["size"] == int(whole["Content-Length"])
    assert pq.read_table(io.BytesIO(body)).num_rows == 6
    part = client.get(file_path(entry["url"]), HTTP_RANGE="bytes=0-3")
    assert part.status_code == 206 and b"".join(part.streaming_content) == body[:4] == b"PAR1"
    head = client.head(file_path(entry["url"]))
    assert head.status_code == 200 and int(head["Content-Length"]) == entry["size"]
    downloads = AuditEvent.objects.filter(action="sharing.download", outcome="success").order_by("seq")
    assert [event.details["bytes"] for event in downloads] == [entry["size"], 4]
    assert downloads[0].target == "dataset:industry_prosperity_monthly@v1"


def test_downloads_count_against_the_quota_and_stop_at_it(client, token, subscription, plan):
    (entry,) = [line["file"] for line in ndjson(query(client, token))[2:]]
    b"".join(client.get(file_path(entry["url"])).streaming_content)
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == entry["size"]
    plan.bytes_downloaded_per_day = entry["size"] + 1
    plan.save()
    refused = client.get(file_path(entry["url"]))
    assert refused.status_code == 429 and refused.json()["errorCode"] == "TOO_MANY_REQUESTS"
    assert AuditEvent.objects.filter(action="sharing.download", outcome="denied").exists()


@pytest.mark.parametrize("asked", [None, "bytes=4-99"])
def test_a_download_cut_short_gives_back_what_was_not_sent(client, token, subscription, monkeypatch, asked):
    """Charged before the first byte, as it must be; then a client that drops the answer (fsspec reads the
    headers of a whole-file GET and hangs up) is given back the unsent part, on the record."""
    from vitamin import ranges

    monkeypatch.setattr(ranges, "_CHUNK_BYTES", 16)
    (entry,) = [line["file"] for line in ndjson(query(client, token))[2:]]
    extra = {"HTTP_RANGE": asked} if asked else {}
    answer = client.get(file_path(entry["url"]), **extra)
    charged = int(answer["Content-Length"])
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == charged
    body = answer.streaming_content
    taken = [next(body), next(body), next(body)]  # the server wrote two chunks and failed on the third
    close_as_a_server_does(answer, monkeypatch)
    sent = sum(map(len, taken))  # the third counts: part of it may have reached the client
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == sent == 48
    download = AuditEvent.objects.get(action="sharing.download")
    (cut,) = AuditEvent.objects.filter(action="sharing.download_incomplete")
    assert download.details["bytes"] == charged and cut.seq > download.seq
    assert cut.details["bytes"] == sent and cut.details["charged"] == charged
    assert cut.details["refunded"] == charged - sent and cut.details["file"] == download.details["file"]
    assert cut.target == download.target and cut.actor_id == download.actor_id
    whole = client.get(file_path(entry["url"]), **extra)  # read to its end: charged in full, nothing given back
    assert len(b"".join(whole.streaming_content)) == charged
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == sent + charged
    assert AuditEvent.objects.filter(action="sharing.download_incomplete").count() == 1


def test_what_is_given_back_goes_to_the_day_it_was_charged(client, token, subscription, monkeypatch):
    """A download charged before midnight and cut short after it is given back on the day it was charged:
    given back on the new day's counter instead, the old day would keep the whole charge."""
    from datetime import timedelta
    from types import SimpleNamespace

    from access import metered
    from vitamin import ranges

    monkeypatch.setattr(ranges, "_CHUNK_BYTES", 16)
    (entry,) = [line["file"] for line in ndjson(query(client, token))[2:]]
    yesterday = time_now() - timedelta(days=1)
    with monkeypatch.context() as before_midnight:
        before_midnight.setattr(metered, "timezone", SimpleNamespace(now=lambda: yesterday))
        answer = client.get(file_path(entry["url"]))
    charged = int(answer["Content-Length"])
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY, now=yesterday) == charged
    next(answer.streaming_content)  # one chunk taken, then the client went away: after midnight
    close_as_a_server_does(answer, monkeypatch)
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY, now=yesterday) == 16
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == 0


def test_expired_tampered_and_revoked_urls_are_refused(client, token, subscription, olga, settings):
    (entry,) = [line["file"] for line in ndjson(query(client, token))[2:]]
    path = file_path(entry["url"])
    token_part = path.rsplit("/", 1)[1]
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert client.get(tampered).status_code == 403
    grant = files.verify(token_part)
    expired, _ = files.issue(
        grant.version_id, grant.path, grant.institution_id, grant.client_id, now=time.time() - 7200
    )
    refused = client.get(f"{BASE}/files/{expired}")
    assert refused.status_code == 403 and refused.json()["code"] == "url_expired"
    from oauth.models import Client

    Client.objects.filter(client_id=grant.client_id).update(disabled_at=time_now())
    disabled = client.get(path)  # a disabled client's URLs stop with it
    assert disabled.status_code == 403 and disabled.json()["code"] == "url_invalid"
    Client.objects.filter(client_id=grant.client_id).update(disabled_at=None)
    subscriptions.revoke(subscription, by=olga, reason="Contract ended.")
    revoked = client.get(path)  # issued before the revocation: stopped at once
    assert revoked.status_code == 403 and revoked.json()["code"] == "subscription_revoked"


def test_limit_hint_version_and_timestamp_choose_what_is_listed(client, token, catalog, store_url):
    from catalog_support import industry_table, publish_table

    publish_table(catalog.industry, industry_table(), store_url)
    assert get(client, f"{TABLE}/version", token)["Delta-Table-Version"] == "2"
    assert query(client, token, version=1)["Delta-Table-Version"] == "1"
    assert query(client, token, limitHint=1)["Delta-Table-Version"] == "2"
    missing = query(client, token, version=9)
    assert missing.status_code == 404
    before = get(client, f"{TABLE}/version", token, startingTimestamp="2000-01-01T00:00:00Z")
    assert before.status_code == 404
    now = get(client, f"{TABLE}/version", token, startingTimestamp="2999-01-01T00:00:00Z")
    assert now["Delta-Table-Version"] == "2"
    bad = query(client, token, timestamp="yesterday")
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert query(client, token, version=-1).status_code == 400


def test_lists_page_with_opaque_tokens(client, token):
    first = get(client, f"{BASE}/shares/vitamin/all-tables", token, maxResults=1).json()
    assert len(first["items"]) == 1 and "nextPageToken" not in first  # one table: one page
    assert get(client, f"{BASE}/shares", token, pageToken="forged").status_code == 400
    assert get(client, f"{BASE}/shares", token, maxResults="x").status_code == 400


def test_a_version_carrying_identifiers_is_not_downloadable(client, token, catalog):
    version = catalog.industry.versions.get(number=1)
    document = dict(version.spec)
    document["columns"] = [
        {**column, "role": "identifier", "action": "pseudonymize"} if column["name"] == "csi_industry" else column
        for column in document["columns"]
    ]
    version.spec, version.spec_fingerprint = document, ""
    version.save()
    refused = query(client, token)
    assert refused.status_code == 403 and refused.json()["code"] == "identifiers_not_downloadable"


def test_sharing_profile_prints_working_profiles(fund, subscription, client):
    from catalog_support import make_client

    tool, _ = make_client(fund, name="Lake loader")
    out = io.StringIO()
    call_command("sharing_profile", "--client", tool.client_id, stdout=out)
    first = json.loads(out.getvalue())
    assert first["shareCredentialsVersion"] == 1 and first["endpoint"].endswith("/delta-sharing/")
    assert get(client, f"{BASE}/shares", first["bearerToken"]).status_code == 200
    out = io.StringIO()
    call_command("sharing_profile", "--client", tool.client_id, "--version", "2", stdout=out)
    second = json.loads(out.getvalue())
    assert second["type"] == "oauth_client_credentials" and second["clientId"] == tool.client_id
    assert second["clientSecret"].startswith("vcs_") and second["scope"] == "download"


def test_an_as_of_time_reads_the_same_version_over_sql_and_delta_sharing(client, token, fund, catalog, store_url):
    import datetime as dt

    from catalog_support import industry_table, publish_table

    first = catalog.industry.versions.get(number=1)
    publish_table(catalog.industry, industry_table(), store_url)
    between = first.created_at + dt.timedelta(microseconds=1)
    catalog.industry.versions.filter(number=2).update(created_at=first.created_at + dt.timedelta(hours=1))
    sql_token = bearer_token(fund, scopes="query")
    moments = {between.isoformat(): "1", (first.created_at + dt.timedelta(hours=2)).isoformat(): "2"}
    for moment, expected in moments.items():
        shared = query(client, token, timestamp=moment)
        assert shared["Delta-Table-Version"] == expected
        answered = client.post(
            "/api/v1/query",
            {"sql": "SELECT count(*) AS n FROM industry_prosperity_monthly", "as_of": moment},
            content_type="application/json",
            **auth(sql_token),
        )
        assert answered.status_code == 200, answered.content
        assert json.loads(b"".join(answered.streaming_content))["rows"] == [[6]]  # read whole: the slot is given back
        assert answered["X-Vitamin-Versions"] == f"industry_prosperity_monthly={expected}"
    too_early = (first.created_at - dt.timedelta(days=1)).isoformat()
    refused = client.post(
        "/api/v1/query",
        {"sql": "SELECT 1 AS one FROM industry_prosperity_monthly", "as_of": too_early},
        content_type="application/json",
        **auth(sql_token),
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "version_not_found"
    assert query(client, token, timestamp=too_early).status_code == 404
