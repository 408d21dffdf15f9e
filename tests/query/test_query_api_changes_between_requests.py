"""Nothing a query request reads outlives a change: each change made between two requests governs the second.

The request path reads the token, the grant and the version through compiled lookups
(`vitamin.prepared`) and keeps nothing between requests; these tests change one thing at a time
between two requests on the same token, through the same code an admin or a refresh uses.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
import pytest
from catalog_support import approved, auth, bearer_token, industry_table, publish_table
from django.utils import timezone

from access import subscriptions
from access.models import QuotaPlan
from catalog.models import DatasetVersion
from institutions import lifecycle
from institutions.models import InstitutionStatus
from oauth.clients import disable_client
from oauth.credentials import hash_secret
from oauth.models import Token

SQL = "SELECT * FROM industry_prosperity_monthly"


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, ["query"])


@pytest.fixture
def token(fund, subscription):
    return bearer_token(fund)


def post(client, token, **body):
    return client.post("/api/v1/query", {"sql": SQL, **body}, content_type="application/json", **auth(token))


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    return {"versions": response["X-Vitamin-Versions"], "max_rows": response["X-Vitamin-Max-Rows"], **json.loads(body)}


def refused(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_revocation_refuses_the_next_request(client, token, subscription):
    ok(post(client, token))
    subscriptions.revoke(subscription, reason="Contract ended.")
    assert refused(post(client, token)) == (403, "subscription_revoked")


def test_an_expiry_refuses_the_next_request(client, token, subscription):
    ok(post(client, token))
    subscriptions.expire(subscription, now=timezone.now() + timedelta(days=365))
    assert refused(post(client, token)) == (403, "subscription_expired")


def test_a_suspension_refuses_the_next_request_and_a_reinstatement_admits_it(client, token, fund):
    ok(post(client, token))
    lifecycle.change_status(fund, InstitutionStatus.SUSPENDED, reason="Audit finding.")
    assert refused(post(client, token)) == (401, "invalid_token")  # a suspension revokes its tokens too
    lifecycle.change_status(fund, InstitutionStatus.APPROVED, reason="Resolved.")
    ok(post(client, bearer_token(fund)))


def test_a_disabled_client_or_revoked_token_is_refused_on_the_next_request(client, token, fund):
    ok(post(client, token))
    Token.objects.filter(client__institution=fund).revoke("test")
    assert refused(post(client, token)) == (401, "invalid_token")
    other = bearer_token(fund)
    ok(post(client, other))
    disable_client(Token.objects.get(access_token_hash=hash_secret(other)).client)
    assert refused(post(client, other)) == (401, "invalid_token")


def test_a_plan_change_governs_the_next_request(client, token, subscription):
    assert ok(post(client, token))["max_rows"] == "500"
    smaller = QuotaPlan.objects.create(
        name="smaller",
        queries_per_day=2,
        rows_returned_per_day=1000,
        bytes_scanned_per_day=10**9,
        bytes_downloaded_per_day=10**9,
        lookups_per_day=50,
        concurrent_queries=1,
        max_query_seconds=30,
        max_result_rows=2,
    )
    subscriptions.grant(
        subscription.institution,
        subscription.dataset,
        modes=["query"],
        plan=smaller,
        expires_at=timezone.now() + timedelta(days=5),
        notify=False,
    )
    answer = ok(post(client, token))
    assert answer["max_rows"] == "2" and len(answer["rows"]) == 2 and answer["truncated"] is True
    assert refused(post(client, token)) == (429, "quota_exceeded")  # 2 a day: the first request counts too


def test_a_limit_override_governs_the_next_request(client, token, subscription):
    ok(post(client, token))
    subscriptions.set_limit_overrides(subscription, {"max_result_rows": 3})
    assert ok(post(client, token))["max_rows"] == "3"


def test_a_new_version_is_read_by_the_next_request(client, token, catalog, store_url):
    assert ok(post(client, token))["versions"] == "industry_prosperity_monthly=1"
    publish_table(catalog.industry, industry_table().append_column("extra", pa.array([1] * 6)), store_url)
    answer = ok(post(client, token))
    assert answer["versions"] == "industry_prosperity_monthly=2"
    assert "extra" in [column["name"] for column in answer["columns"]]


def test_a_retired_latest_version_is_not_read_by_the_next_request(client, token, catalog, store_url):
    publish_table(catalog.industry, industry_table(), store_url)
    assert ok(post(client, token))["versions"] == "industry_prosperity_monthly=2"
    DatasetVersion.objects.filter(dataset=catalog.industry, number=2).update(
        status=DatasetVersion.Status.RETIRED, retired_at=timezone.now()
    )
    assert ok(post(client, token))["versions"] == "industry_prosperity_monthly=1"


def test_a_pin_set_or_removed_governs_the_next_request(client, token, catalog, store_url, subscription, plan):
    publish_table(catalog.industry, industry_table(), store_url)
    assert ok(post(client, token))["versions"] == "industry_prosperity_monthly=2"
    first = DatasetVersion.objects.get(dataset=catalog.industry, number=1)
    expires_at = timezone.now() + timedelta(days=5)
    subscriptions.grant(
        subscription.institution, catalog.industry, modes=["query"], plan=plan, expires_at=expires_at,
        pinned_version=first, notify=False,
    )  # fmt: skip
    assert ok(post(client, token))["versions"] == "industry_prosperity_monthly=1"
    subscriptions.grant(
        subscription.institution, catalog.industry, modes=["query"], plan=plan, expires_at=expires_at, notify=False
    )
    assert ok(post(client, token))["versions"] == "industry_prosperity_monthly=2"


def test_a_mode_removed_refuses_the_next_request(client, token, subscription, plan):
    ok(post(client, token))
    subscriptions.grant(
        subscription.institution,
        subscription.dataset,
        modes=["download"],
        plan=plan,
        expires_at=timezone.now() + timedelta(days=5),
        notify=False,
    )
    assert refused(post(client, token)) == (403, "mode_not_granted")
