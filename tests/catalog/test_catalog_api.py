"""The catalog API: search and filters, metadata, versions, schema with statistics, samples gated by tier."""

from __future__ import annotations

import pytest
from catalog_support import AGGREGATE_K, CHANNEL_BUYERS, approved, auth, bearer_token, industry_table, publish_table
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access import subscriptions
from audit.models import AuditEvent
from catalog.models import Dataset


@pytest.fixture
def token(fund):
    return bearer_token(fund)


def get(client, url, token):
    response = client.get(url, **auth(token))
    assert response.status_code == 200, response.content
    return response.json()


def test_listing_with_search_filters_and_pages(client, catalog, token):
    body = get(client, "/api/v1/datasets", token)
    assert body["count"] == 7
    assert [row["slug"] for row in body["results"]] == [
        "card_transactions",
        "company_consumption_monthly",
        "credit_profiles",
        "industry_prosperity_monthly",
        "listed_brands",
        "market_daily",
        "stock_attention_daily",
    ]
    industry = body["results"][3]
    assert industry["tier"] == "open" and industry["access_modes"] == ["query", "download"]
    assert industry["latest_version"] == 1 and industry["last_published_at"]
    # The data's own period beside the publication time: the latest version's min and max month.
    months = sorted(str(month) for month in industry_table().column("month").to_pylist())
    assert industry["time_range"] == {"column": "month", "from": months[0], "to": months[-1]}
    assert body["results"][2]["time_range"] is None  # credit_profiles: a snapshot, no time column
    assert body["results"][6]["latest_version"] is None and body["results"][6]["time_range"] is None

    def slugs(query: str) -> list[str]:
        return [row["slug"] for row in get(client, f"/api/v1/datasets?{query}", token)["results"]]

    assert slugs("q=credit+score") == ["credit_profiles"]
    assert slugs("q=INDEX+factors") == ["company_consumption_monthly", "industry_prosperity_monthly"]  # any case
    assert slugs("q=industry") == [
        "card_transactions",
        "industry_prosperity_monthly",
        "listed_brands",
        "stock_attention_daily",
    ]
    assert slugs("tier=aggregate") == ["card_transactions"]
    assert slugs("theme=markets") == ["listed_brands", "market_daily", "stock_attention_daily"]
    assert slugs("update_frequency=daily&tier=open") == ["stock_attention_daily"]
    second_page = get(client, "/api/v1/datasets?page_size=3&page=3", token)
    assert [row["slug"] for row in second_page["results"]] == ["stock_attention_daily"]
    assert second_page["previous"] and second_page["next"] is None

    bad = client.get("/api/v1/datasets?tier=secret", **auth(token))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_inactive_datasets_leave_the_catalog(client, catalog, token):
    Dataset.objects.filter(slug="stock_attention_daily").update(is_active=False)
    assert get(client, "/api/v1/datasets", token)["count"] == 6
    response = client.get("/api/v1/datasets/stock_attention_daily", **auth(token))
    assert response.status_code == 404 and response.json()["error"]["code"] == "dataset_not_found"


def test_dataset_metadata_freshness_and_coverage(client, catalog, token):
    body = get(client, "/api/v1/datasets/card_transactions", token)
    assert body["publisher"] == "Vitamin demo data provider" and body["contact"] == "data@vitamin.example"
    assert "re-identify" in body["license"] and body["keywords"][0] == "transactions"
    assert body["schedule"] == "30 2 * * *" and body["next_refresh_at"].endswith("02:30:00+08:00")
    assert body["latest_version"]["number"] == 1 and body["latest_version"]["source_watermark"] == "2025-12-31"
    assert body["latest_version"]["time_range"] == {"column": "month", "from": "2025-01-01", "to": "2025-02-01"}
    assert body["coverage"] == {
        "temporal": {"column": "month", "from": "2025-01-01", "to": "2025-02-01"},
        "spatial": "Mainland China, by province (1 values)",
    }
    assert body["lookup"] is None


def test_a_lookup_dataset_says_what_a_lookup_takes_and_gives(client, catalog, token):
    terms = get(client, "/api/v1/datasets/credit_profiles", token)["lookup"]
    assert terms["id_types"] == ["resident_id", "mobile"] and terms["consent_scope"] == "credit_assessment"
    assert "credit_score" in terms["fields"] and "customer" not in terms["fields"]
    assert terms["thresholds"] == ["credit_score"] and terms["k"] == 5
    assert "age_band" in terms["cohort"]["dimensions"]


def test_versions_newest_first(client, catalog, token, store_url):
    publish_table(catalog.industry, industry_table().slice(0, 2), store_url)  # January only
    body = get(client, "/api/v1/datasets/industry_prosperity_monthly/versions", token)
    assert [row["number"] for row in body["results"]] == [2, 1]
    # Each version says which period its data covers, beside when it was published.
    assert [row["time_range"] for row in body["results"]] == [
        {"column": "month", "from": "2025-01-01", "to": "2025-01-01"},
        {"column": "month", "from": "2025-01-01", "to": "2025-03-01"},
    ]
    assert body["results"][0]["files"][0]["path"] == "part-0.parquet"
    assert body["results"][0]["privacy_report"]["passed"] is True


def test_schema_is_the_data_dictionary_with_statistics(client, catalog, token):
    body = get(client, "/api/v1/datasets/industry_prosperity_monthly/schema", token)
    columns = {column["name"]: column for column in body["columns"]}
    assert list(columns)[:2] == ["csi_industry", "month"]
    assert columns["gmv"]["role"] == "measure" and "Spending" in columns["gmv"]["description"]
    assert columns["month"]["stats"] == {
        "null_count": 0,
        "distinct_count": 3,
        "distinct_count_approximate": True,  # the build's approx_count_distinct
        "min": "2025-01-01",
        "max": "2025-03-01",
    }
    assert columns["mom_growth"]["stats"]["null_count"] == 2
    # A dataset with no version yet still has its dictionary, from the spec.
    unbuilt = get(client, "/api/v1/datasets/stock_attention_daily/schema", token)
    assert unbuilt["version"] is None and unbuilt["columns"][0] == {
        "name": "ticker",
        "type": "string",
        "role": "dimension",
        "description": "Exchange ticker (600519.SH).",
        "stats": None,
    }


def test_statistics_never_show_extremes_of_pseudonyms_or_sensitive_values(client, catalog, token):
    columns = {c["name"]: c for c in get(client, "/api/v1/datasets/credit_profiles/schema", token)["columns"]}
    assert columns["customer"]["stats"]["min"] is None and columns["customer"]["stats"]["max"] is None
    assert columns["credit_score"]["stats"]["min"] is None and columns["credit_score"]["stats"]["distinct_count"] == 2
    assert columns["age_band"]["stats"]["min"] == "30-39"


def test_open_sample_is_real_rows(client, catalog, token):
    body = get(client, "/api/v1/datasets/industry_prosperity_monthly/sample?limit=4", token)
    assert body["kind"] == "rows" and body["version"] == 1
    assert body["columns"][:3] == ["csi_industry", "month", "gmv"]
    assert body["rows"][0][:3] == ["主要消费", "2025-01-01", 1000.0] and len(body["rows"]) == 4


def test_aggregate_sample_needs_a_subscription_and_suppresses_small_groups(client, fund, catalog, token, plan):
    denied = client.get("/api/v1/datasets/card_transactions/sample", **auth(token))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "not_subscribed"

    approved(fund, catalog.cards, plan, ["query"])
    body = get(client, "/api/v1/datasets/card_transactions/sample?dimension=channel", token)
    assert body["kind"] == "aggregate" and body["k"] == AGGREGATE_K and body["dimension"] == "channel"
    assert body["columns"] == ["channel", "rows", "distinct buyer"]
    assert body["rows"] == [["online", 2 * CHANNEL_BUYERS["online"], 10], ["pos", 2 * CHANNEL_BUYERS["pos"], 12]]
    assert body["suppressed_groups"] == 1, "mobile has 3 buyers, fewer than k"
    assert "buyer" not in body["columns"] and all("pseudonym" not in str(row) for row in body["rows"])
    assert get(client, "/api/v1/datasets/card_transactions/sample", token)["dimension"] == "month"
    events = AuditEvent.objects.filter(action="catalog.sample", outcome="success")
    assert events.count() == 2, "each sample of non-open data is recorded"
    denial = AuditEvent.objects.get(action="catalog.sample", outcome="denied")  # the refused one too
    assert denial.details["code"] == "not_subscribed" and denial.target == "dataset:card_transactions"
    event = events.order_by("seq").first()
    assert event.details["dimension"] == "channel" and event.actor_type == "client"
    assert event.institution == str(fund.pk) and event.target == "dataset:card_transactions"

    refused = client.get("/api/v1/datasets/card_transactions/sample?dimension=buyer", **auth(token))
    assert refused.status_code == 400


def test_lookup_sample_is_the_schema_only(client, catalog, token):
    body = get(client, "/api/v1/datasets/credit_profiles/sample", token)
    assert body["kind"] == "schema_only" and body["rows"] == []
    assert "credit_score" in body["columns"] and "customer" not in body["columns"]


def test_a_revoked_subscription_is_refused_on_the_next_sample_request(client, fund, catalog, token, plan):
    subscription = approved(fund, catalog.cards, plan, ["query"])
    get(client, "/api/v1/datasets/card_transactions/sample", token)
    subscriptions.revoke(subscription, reason="Terms breached.")
    response = client.get("/api/v1/datasets/card_transactions/sample", **auth(token))
    assert response.status_code == 403 and response.json()["error"]["code"] == "subscription_revoked"


def test_catalog_needs_a_token_with_catalog_read(client, catalog, fund):
    assert client.get("/api/v1/datasets").status_code == 401
    response = client.get("/api/v1/datasets", **auth(bearer_token(fund, scopes="query")))
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_the_listing_makes_the_same_queries_for_one_dataset_or_many(client, catalog, token, store_url):
    # Each count is of a repeated call: a first one also notes the client's last use (once a minute,
    # oauth.activity) and reads the token anew after writes changed the access generation.
    Dataset.objects.exclude(slug="industry_prosperity_monthly").update(is_active=False)
    get(client, "/api/v1/datasets", token)
    with CaptureQueriesContext(connection) as one:
        get(client, "/api/v1/datasets", token)
    Dataset.objects.update(is_active=True)
    publish_table(catalog.industry, industry_table(), store_url)
    get(client, "/api/v1/datasets", token)
    with CaptureQueriesContext(connection) as many:
        assert get(client, "/api/v1/datasets", token)["count"] == 7
    assert len(many) == len(one)
    with CaptureQueriesContext(connection) as versions_one:
        get(client, "/api/v1/datasets/card_transactions/versions", token)
    with CaptureQueriesContext(connection) as versions_many:
        get(client, "/api/v1/datasets/industry_prosperity_monthly/versions", token)
    assert len(versions_many) == len(versions_one)
