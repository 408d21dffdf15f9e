"""Malformed and hostile requests to the partner API: none may answer 500, and every refusal stays on record.

Each test goes through the live Django test client, as a partner would: a query that reads no
dataset, a CTE shadowing a dataset, an overlong table name, a JSON body nested 100,000 deep, a
token without the scope or not valid at all, and HEAD on a result after its grant was revoked.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from catalog_support import approved, auth, bearer_token
from django.test import Client

from access import subscriptions
from audit.models import AuditEvent
from audit.service import verify_log
from datasets.spec import Mode
from query.models import QueryJob
from query.tasks import run_query_job

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


@pytest.fixture(autouse=True)
def job_results(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def subscription(fund, catalog, plan):
    approved(fund, catalog.cards, plan, [Mode.QUERY])
    return approved(fund, catalog.industry, plan, [Mode.QUERY])


@pytest.fixture
def token(fund, subscription):
    return bearer_token(fund)


@pytest.fixture
def client():
    """A client that sees a server error as the partner does (a 500), not as an exception."""
    return Client(raise_request_exception=False)


def post(client, token, sql, **body):
    return client.post("/api/v1/query", {"sql": sql, **body}, content_type="application/json", **auth(token))


def error_code(response) -> str:
    return response.json()["error"]["code"]


def events(action: str, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("seq"))


# --- a query must read a dataset --------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT 1 AS a UNION ALL SELECT 2",
        "SELECT * FROM (VALUES (1), (2)) AS t(x)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    ],
)
def test_a_query_that_reads_no_dataset_is_400_no_dataset_and_audited(client, token, sql):
    for path in ("/api/v1/query", "/api/v1/jobs"):
        response = client.post(path, {"sql": sql}, content_type="application/json", **auth(token))
        assert response.status_code == 400, response.content
        assert error_code(response) == "no_dataset"
    refused = events("query.run")
    assert [(e.outcome, e.details["code"]) for e in refused] == [("denied", "no_dataset")] * 2
    assert not events("query.start")
    assert not QueryJob.objects.exists()


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM '/etc/passwd'", "file_access_not_allowed"),
        ("SELECT * FROM information_schema.tables", "catalog_not_allowed"),
        ("SELECT * FROM main.industry_prosperity_monthly", "qualified_name_not_allowed"),
        ("SELECT getenv('HOME')", "function_not_allowed"),
    ],
)
def test_a_query_that_reads_no_dataset_keeps_the_engines_more_precise_code(client, token, sql, code):
    response = post(client, token, sql)
    assert response.status_code == 400 and error_code(response) == code


@pytest.mark.parametrize("body", [{"max_rows": 2**40}, {"versions": {"industry_prosperity_monthly": 2**40}}])
def test_numbers_beyond_a_database_integer_are_400_invalid_request(client, token, body):
    for path in ("/api/v1/query", "/api/v1/jobs"):
        response = client.post(path, {"sql": INDUSTRY_SQL, **body}, content_type="application/json", **auth(token))
        assert response.status_code == 400 and error_code(response) == "invalid_request", response.content


@pytest.mark.parametrize("path", ["/api/v1/subscriptions/{pk}", "/api/v1/subscriptions/{pk}/cancel"])
def test_an_id_beyond_a_database_integer_is_404(client, token, path):
    call = client.post if path.endswith("cancel") else client.get
    response = call(path.format(pk=2**70), **auth(token))
    assert response.status_code == 404, response.content


# --- a CTE may not shadow a dataset -----------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "WITH industry_prosperity_monthly AS (SELECT 1 AS x) SELECT * FROM industry_prosperity_monthly",
        "WITH card_transactions AS (SELECT 1 AS x) SELECT * FROM card_transactions",
        "WITH industry_prosperity_monthly AS (SELECT * FROM card_transactions) "
        "SELECT count(*) FROM industry_prosperity_monthly",
        "WITH Industry_Prosperity_Monthly AS (SELECT csi_industry FROM industry_prosperity_monthly) "
        "SELECT * FROM industry_prosperity_monthly",
        "WITH RECURSIVE industry_prosperity_monthly(n) AS (SELECT 1 UNION ALL "
        "SELECT n + 1 FROM industry_prosperity_monthly WHERE n < 3) SELECT * FROM industry_prosperity_monthly",
        "SELECT * FROM (WITH card_transactions AS (SELECT 1 AS x) SELECT * FROM card_transactions) AS t",
    ],
)
def test_a_cte_that_shadows_a_dataset_is_400_cte_name_conflict(client, token, sql):
    response = post(client, token, sql)
    assert response.status_code == 400, response.content
    assert error_code(response) == "cte_name_conflict"
    [refused] = events("query.run")
    assert (refused.outcome, refused.details["code"]) == ("denied", "cte_name_conflict")


def test_a_cte_named_like_a_dataset_the_partner_does_not_hold_is_refused_too(client, fund, catalog, plan):
    token = bearer_token(fund)  # no subscription at all
    response = post(client, token, "WITH credit_profiles AS (SELECT 1 AS x) SELECT * FROM credit_profiles")
    assert response.status_code == 400, response.content
    assert error_code(response) == "cte_name_conflict"


# --- overlong names: a refusal stays on record ------------------------------------------------


def test_an_overlong_table_name_is_refused_and_both_events_are_on_record(client, token, fund):
    name = "t" * 5000
    response = post(client, token, f"SELECT * FROM {name}")
    assert 400 <= response.status_code < 500, response.content
    assert error_code(response) == "not_subscribed"
    [denied] = events("grant.denied")
    assert len(denied.target) <= AuditEvent._meta.get_field("target").max_length
    assert denied.target.startswith("dataset:ttt")
    assert (
        denied.details["truncated_fields"]["target"]["sha256"] == hashlib.sha256(f"dataset:{name}".encode()).hexdigest()
    )
    [refused] = events("query.run")
    assert (refused.outcome, refused.details["code"]) == ("denied", "not_subscribed")
    assert refused.institution == str(fund.pk)
    assert verify_log().ok


@pytest.mark.parametrize("path", ["/api/v1/datasets/{slug}", "/api/v1/datasets/{slug}/versions"])
def test_an_overlong_slug_in_the_catalog_is_404(client, token, path):
    response = client.get(path.format(slug="s" * 5000), **auth(token))
    assert response.status_code == 404, response.content


# --- deeply nested JSON -----------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("path", ["/api/v1/query", "/api/v1/jobs", "/api/v1/subscriptions"])
def test_a_deeply_nested_json_body_is_400_malformed_request(client, token, path):
    for body in (DEEP, '{"sql": ' + DEEP + "}", "[" * 100):
        response = client.post(path, body, content_type="application/json", **auth(token))
        assert response.status_code == 400, response.content
        assert error_code(response) == "malformed_request"


def test_a_deeply_nested_body_on_the_oauth_registration_endpoint_is_400(client, db):
    response = client.post("/oauth/register", DEEP, content_type="application/json", secure=True)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_client_metadata"


def test_a_deeply_nested_client_assertion_on_the_token_endpoint_is_401(client, fund):
    from partner_support import make_client

    known, _ = make_client(fund, name="Assertion client")
    for claims in (DEEP, '{"sub": "' + known.client_id + '", "x": ' + DEEP + "}"):
        payload = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
        assertion = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        for extra in ({}, {"client_id": known.client_id}):
            response = client.post("/oauth/token", {**data, **extra}, secure=True)
            assert response.status_code in (400, 401), response.content
            assert response.json()["error"] in ("invalid_client", "invalid_request")


# --- every refusal of a partner endpoint is audited -------------------------------------------


def test_a_token_without_the_scope_is_403_and_audited(client, fund, subscription):
    token = bearer_token(fund, scopes="catalog:read")
    response = post(client, token, INDUSTRY_SQL)
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    [denied] = events("api.denied")
    assert denied.outcome == "denied" and denied.actor_type == "client"
    assert denied.institution == str(fund.pk) and denied.actor_id
    assert denied.details == {
        "code": "insufficient_scope",
        "status": 403,
        "method": "POST",
        "path": "/api/v1/query",
        "required_scope": "query",
    }
    assert not events("query.run")


@pytest.mark.parametrize(
    ("authorization", "code"),
    [("Bearer not-a-token", "invalid_token"), ("Bearer ", "invalid_token"), (None, "not_authenticated")],
)
def test_a_request_without_a_valid_token_is_401_and_audited_without_the_token(client, catalog, authorization, code):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = client.get("/api/v1/datasets", **headers)
    assert response.status_code == 401 and error_code(response) == code
    [denied] = events("api.denied")
    assert (denied.actor_type, denied.actor_id, denied.institution) == ("system", "", "")
    assert denied.details["code"] == code and denied.details["status"] == 401
    assert denied.details["path"] == "/api/v1/datasets"
    assert "not-a-token" not in str(denied.to_record())


def test_an_expired_token_is_401_and_audited(client, fund, subscription):
    from django.utils import timezone

    from oauth.models import Token

    token = bearer_token(fund)
    Token.objects.update(access_expires_at=timezone.now())
    response = post(client, token, INDUSTRY_SQL)
    assert response.status_code == 401 and error_code(response) == "invalid_token"
    [denied] = events("api.denied")
    assert denied.details["code"] == "invalid_token" and denied.details["method"] == "POST"
    assert token not in str(denied.to_record())


# --- HEAD on a result re-checks the grants ----------------------------------------------------


def test_head_on_a_result_is_refused_once_the_grant_is_revoked(client, token, subscription, olga):
    response = client.post("/api/v1/jobs", {"sql": INDUSTRY_SQL}, content_type="application/json", **auth(token))
    job = response.json()
    run_query_job.apply(args=[job["id"]])
    links = client.get(job["links"]["self"], **auth(token)).json()["links"]
    heads = lambda: (client.head(links["download"]), client.head(links["result"], **auth(token)))  # noqa: E731
    assert [head.status_code for head in heads()] == [200, 200]

    subscriptions.revoke(subscription, by=olga, reason="Contract ended.")
    for head in heads():
        assert head.status_code == 403
        assert "Content-Length" not in head or head["Content-Length"] != str(QueryJob.objects.get().result_bytes)
    assert len(events("grant.denied")) == 2
    assert not events("query.job_download", outcome="success")


def test_a_forged_download_link_is_audited_without_the_link(client, token):
    forged = "not-a-signed-link-0123456789"
    response = client.get(f"/api/v1/job-results/{forged}")
    assert response.status_code == 404 and error_code(response) == "link_invalid"
    [denied] = events("api.denied")
    assert denied.details == {
        "code": "link_invalid",
        "status": 404,
        "method": "GET",
        "path": "/api/v1/job-results/%3Clink%3E",
    }
    assert forged not in str(denied.to_record())


# --- NUL characters: PostgreSQL's text cannot hold them -------------------------------------


def test_a_nul_character_in_a_body_is_400_malformed_request(client, fund, catalog):
    token = bearer_token(fund)
    body = {"dataset": "industry\x00", "modes": ["query"], "purpose": "x"}
    for sent in (
        client.post("/api/v1/subscriptions", body, content_type="application/json", **auth(token)),
        client.post("/api/v1/subscriptions", body, **auth(token)),  # multipart
    ):
        assert sent.status_code == 400 and error_code(sent) == "malformed_request", sent.content


@pytest.mark.parametrize("query", ["q=a%00b", "theme=%00", "status=%00"])
def test_a_nul_character_in_a_query_parameter_is_not_a_server_error(client, token, query):
    for path in ("/api/v1/datasets", "/api/v1/subscriptions"):
        assert client.get(f"{path}?{query}", **auth(token)).status_code < 500
