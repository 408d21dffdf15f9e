"""The partner subscription API: who sees and does what, states over HTTP, usage, and no N+1 queries."""

from __future__ import annotations

import pytest
from catalog_support import approved, auth, bearer_token
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access import metering, service
from access.models import Subscription
from audit.models import AuditEvent

ANALYST_SCOPES = "catalog:read query download lookup usage:read"  # what an analyst may delegate to a tool


@pytest.fixture
def fund_token(fund):
    return bearer_token(fund)


@pytest.fixture
def bank_token(bank):
    return bearer_token(bank)


def request_body(dataset="industry_prosperity_monthly", **overrides):
    return {
        "dataset": dataset,
        "modes": ["query"],
        "purpose": "Monthly index rebalancing.",
        "plan": "standard",
    } | overrides


def post(client, url, token, body=None):
    return client.post(url, body or {}, content_type="application/json", **auth(token))


def test_a_partner_requests_access_and_sees_it(client, fund, fund_token, demo_datasets, plan):
    response = post(client, "/api/v1/subscriptions", fund_token, request_body(modes=["query", "download"]))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "requested" and body["dataset"] == "industry_prosperity_monthly"
    assert body["modes"] == ["query", "download"] and body["requested_plan"] == "standard" and body["plan"] is None
    event = AuditEvent.objects.get(action="subscription.request")
    assert event.actor_type == "client" and event.institution == str(fund.pk)

    listed = client.get("/api/v1/subscriptions", **auth(fund_token)).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert client.get(f"/api/v1/subscriptions/{body['id']}", **auth(fund_token)).json()["purpose"] == (
        "Monthly index rebalancing."
    )


def test_requesting_twice_is_a_conflict(client, fund_token, demo_datasets, plan):
    assert post(client, "/api/v1/subscriptions", fund_token, request_body()).status_code == 201
    response = post(client, "/api/v1/subscriptions", fund_token, request_body())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (request_body(modes=["lookup"]), "not lookup"),
        (request_body(purpose=""), "purpose"),
        (request_body(dataset="no_such_dataset"), "dataset"),
        (request_body(modes=["delete"]), "modes"),
        (request_body(plan="platinum"), "plan"),
    ],
)
def test_bad_requests_are_400(client, fund_token, demo_datasets, plan, body, field):
    response = post(client, "/api/v1/subscriptions", fund_token, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert field in response.json()["error"]["message"]
    assert not Subscription.objects.exists()


def test_cancel_ends_access_at_once(client, fund, fund_token, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"])
    assert service.allowed(fund, demo_datasets.industry, "query")
    response = post(client, f"/api/v1/subscriptions/{subscription.pk}/cancel", fund_token, {"reason": "Budget."})
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert not service.allowed(fund, demo_datasets.industry, "query")
    again = post(client, f"/api/v1/subscriptions/{subscription.pk}/cancel", fund_token)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"


def test_an_outsider_institution_sees_and_touches_nothing_of_anothers(client, fund, bank_token, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"])
    assert client.get("/api/v1/subscriptions", **auth(bank_token)).json()["count"] == 0
    response = client.get(f"/api/v1/subscriptions/{subscription.pk}", **auth(bank_token))
    assert response.status_code == 404 and response.json()["error"]["code"] == "subscription_not_found"
    assert post(client, f"/api/v1/subscriptions/{subscription.pk}/cancel", bank_token).status_code == 404
    assert Subscription.objects.get(pk=subscription.pk).status == "approved"


def test_an_analysts_tool_reads_but_cannot_request(client, fund, bob, demo_datasets, plan):
    approved(fund, demo_datasets.industry, plan, ["query"])
    token = bearer_token(fund, scopes=ANALYST_SCOPES, user=bob)
    assert client.get("/api/v1/subscriptions", **auth(token)).json()["count"] == 1
    response = post(client, "/api/v1/subscriptions", token, request_body(dataset="card_transactions"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_a_tool_acts_with_its_members_current_role(client, fund, alice, bob, demo_datasets, plan):
    owner_tool = bearer_token(fund, scopes="catalog:read subscriptions:write", user=alice)
    assert post(client, "/api/v1/subscriptions", owner_tool, request_body()).status_code == 201
    # A token with subscriptions:write acting for bob, an analyst: the scope does not lift his role.
    analyst_tool = bearer_token(fund, scopes="catalog:read subscriptions:write", user=bob)
    response = post(client, "/api/v1/subscriptions", analyst_tool, request_body(dataset="card_transactions"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


def test_reads_need_a_token_and_the_scope(client, fund, demo_datasets):
    assert client.get("/api/v1/subscriptions").status_code == 401
    usage_only = bearer_token(fund, scopes="usage:read")
    response = client.get("/api/v1/subscriptions", **auth(usage_only))
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    catalog_only = bearer_token(fund, scopes="catalog:read")
    assert client.get("/api/v1/usage", **auth(catalog_only)).status_code == 403


def test_plans_on_offer(client, fund_token, plan):
    type(plan).objects.create(name="internal", is_offered=False)
    body = client.get("/api/v1/plans", **auth(fund_token)).json()
    assert [row["name"] for row in body["results"]] == ["standard"]
    assert body["results"][0]["queries_per_day"] == 100


def test_usage_against_limits(client, fund, fund_token, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"])
    metering.charge(service.ensure(fund, demo_datasets.industry, "query"), "queries", 4)
    body = client.get("/api/v1/usage", **auth(fund_token)).json()
    assert len(body["subscriptions"]) == 1
    entry = body["subscriptions"][0]
    assert entry["subscription"] == subscription.pk and entry["limits"]["queries_per_day"] == 100
    assert len(entry["days"]) == 7 and entry["days"][-1]["day"] == body["to"]
    assert entry["days"][-1]["metrics"]["queries"] == {"used": 4, "limit": 100}
    bad = client.get("/api/v1/usage?from=2025-13-01", **auth(fund_token))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    reversed_range = client.get("/api/v1/usage?from=2025-02-01&to=2025-01-01", **auth(fund_token))
    assert reversed_range.status_code == 400


def count_queries(client, url, token) -> int:
    """Queries of a repeated call: the first also notes the client's last use (once a minute, oauth.activity) and
    reads the token anew after writes changed the access generation."""
    client.get(url, **auth(token))
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **auth(token))
    assert response.status_code == 200, response.content
    return len(captured)


@pytest.mark.parametrize("url", ["/api/v1/subscriptions", "/api/v1/usage"])
def test_list_endpoints_make_the_same_queries_for_one_row_or_many(client, fund, fund_token, demo_datasets, plan, url):
    approved(fund, demo_datasets.industry, plan, ["query"])
    one = count_queries(client, url, fund_token)
    approved(fund, demo_datasets.cards, plan, ["query"])
    approved(fund, demo_datasets.stocks, plan, ["download"])
    approved(fund, demo_datasets.credit, plan, ["lookup"])
    assert count_queries(client, url, fund_token) == one
