"""The SQL workbench (portal/workbench_views.py): the API's gateway, grants, quotas and audit, in the browser's forms.

The fund (alice owner, bob analyst) subscribes to industry_prosperity_monthly (open) and
card_transactions (aggregate, k = 10); the bank (dave) subscribes to nothing.
"""

from __future__ import annotations

import io
import json
import re
import uuid

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from catalog_support import approved, auth, bearer_token
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st
from partner_support import add_member, make_user

from audit.models import AuditEvent
from datasets.spec import Mode
from institutions.models import Role
from portal import workbench
from query.models import QueryJob, SavedQuery
from query.tasks import run_query_job
from quotas.models import UsageDaily

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"
CARDS_SQL = "SELECT channel, COUNT(*) AS n FROM card_transactions GROUP BY channel ORDER BY channel"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def job_results(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def subscribed(fund, catalog, plan):
    return {
        "industry": approved(fund, catalog.industry, plan, [Mode.QUERY]),
        "cards": approved(fund, catalog.cards, plan, [Mode.QUERY]),
    }


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def run(client, sql, **extra):
    return client.post("/workbench/", {"sql": sql, **extra})


def grid_rows(response) -> list[list[str]]:
    """The result grid's cells, as text."""
    body = response.content.decode()
    tbody = re.search(r'<table class="grid" id="result-grid">.*?<tbody>(.*?)</tbody>', body, re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", tbody, re.S)]


def result_data(response) -> dict:
    body = response.content.decode()
    return json.loads(re.search(r'<script id="result-data" type="application/json">(.*?)</script>', body, re.S)[1])


def api_rows(client, token, sql) -> dict:
    response = client.post("/api/v1/query", {"sql": sql}, content_type="application/json", **auth(token))
    assert response.status_code == 200, response
    return json.loads(b"".join(response.streaming_content))


# --- the page and who may use it ---------------------------------------------------------------------


def test_the_page_lists_the_granted_datasets_with_their_columns_rules_and_samples(bob, subscribed, catalog):
    response = signed_in(bob).get("/workbench/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="schema-industry_prosperity_monthly"' in body
    assert 'id="schema-card_transactions"' in body
    assert 'id="schema-credit_profiles"' not in body  # not subscribed
    cards = body[body.index('id="schema-card_transactions"') :]
    assert "Aggregates only: count, count_distinct, sum, avg" in cards
    assert "fewer than 10 distinct entities" in cards
    assert "<code>buyer</code>" not in cards  # the entity column is not offered on the aggregate tier
    assert "<code>province</code>" in cards


def test_each_sample_query_runs_as_shown(bob, subscribed, catalog):
    client = signed_in(bob)
    samples = [sample for panel in workbench.panels(subscribed["cards"].institution) for sample in panel.samples]
    assert len(samples) >= 4  # two per queryable dataset
    for sample in samples:
        response = run(client, sample)
        assert response.status_code == 200, (sample, response.content.decode()[-2000:])
        assert "query-error" not in response.content.decode()
        assert grid_rows(response), sample


@pytest.mark.parametrize("who", ["viewer", "outsider", "other_institution"])
def test_only_members_who_may_query_for_the_institution_get_in(who, fund, bank, subscribed, dave):
    if who == "viewer":
        user = make_user("carol@fund.example")
        add_member(fund, user, Role.VIEWER)
        response = signed_in(user).get("/workbench/")
    elif who == "outsider":
        response = signed_in(make_user("mallory@example.net")).get("/workbench/")
    else:  # dave may query for the bank, never for the fund
        response = run(signed_in(dave), INDUSTRY_SQL, institution=fund.pk)
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="query.run").exists()


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/workbench/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.post("/workbench/", {"sql": INDUSTRY_SQL}).status_code == 302


def test_a_post_without_the_csrf_token_is_refused(bob, subscribed):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post("/workbench/", {"sql": INDUSTRY_SQL}).status_code == 403
    assert not AuditEvent.objects.filter(action="query.run").exists()


# --- running ---------------------------------------------------------------------------------------


def test_a_query_shows_the_same_rows_as_the_api_and_is_charged_and_audited_as_the_user(client, bob, fund, subscribed):
    response = run(signed_in(bob), INDUSTRY_SQL)
    assert response.status_code == 200
    expected = api_rows(client, bearer_token(fund), INDUSTRY_SQL)
    assert result_data(response)["rows"] == expected["rows"]
    assert [row[0] for row in grid_rows(response)] == [row[0] for row in expected["rows"]]

    event = AuditEvent.objects.filter(action="query.run", actor_type="user").get()
    assert (event.actor_id, event.institution, event.outcome) == ("bob@fund.example", str(fund.pk), "success")
    assert event.details["user"] == "bob@fund.example" and event.details["sql"] == INDUSTRY_SQL
    assert AuditEvent.objects.filter(action="query.start", actor_id="bob@fund.example").count() == 1
    charged = UsageDaily.objects.filter(subject=subscribed["industry"].quota_subject, metric="queries")
    assert sum(row.amount for row in charged) == 2  # the workbench's query and the API's


def test_the_aggregate_tier_rules_hold_in_the_workbench(bob, subscribed):
    response = run(signed_in(bob), "SELECT * FROM card_transactions")
    assert response.status_code == 400
    assert 'class="error-code">' in response.content.decode()
    assert not grid_rows_present(response)
    event = AuditEvent.objects.get(action="query.run")
    assert event.outcome == "denied" and event.actor_id == "bob@fund.example"


def grid_rows_present(response) -> bool:
    return 'id="result-grid"' in response.content.decode()


def test_an_engine_error_is_shown_at_its_place_in_the_sql(bob, subscribed):
    sql = "SELECT channel,\n       COUNT(*) AS n, SUM(no_such_column) AS s\nFROM card_transactions GROUP BY channel"
    response = run(signed_in(bob), sql)
    assert response.status_code == 400
    body = response.content.decode()
    code = re.search(r'class="error-code">([^<]+)<', body)[1]
    assert code == "unknown_column"
    place = re.search(r"Line (\d+), column (\d+)", body)
    assert place is not None, body[-3000:]
    line, column = int(place[1]), int(place[2])
    assert sql.split("\n")[line - 1][column - 1 :].startswith("no_such_column")
    caret = re.search(r'<span class="caret">( *)\^</span>', body)[1]
    assert len(caret) == column - 1


@given(st.text(alphabet="ab\n ", max_size=40), st.integers(min_value=-3, max_value=45))
def test_an_error_place_points_at_the_character_the_engine_named(sql, position):
    place = workbench.error_place(sql, position)
    if not 1 <= position <= len(sql) + 1:
        assert place is None
        return
    lines = sql.split("\n")
    assert 1 <= place["line"] <= len(lines)
    before = "\n".join(lines[: place["line"] - 1])
    index = (len(before) + 1 if place["line"] > 1 else 0) + place["column"] - 1
    assert index == position - 1


def test_values_and_names_from_the_data_are_escaped(bob, subscribed):
    sql = "SELECT '<script>alert(1)</script>' AS \"<img src=x onerror=alert(2)>\" FROM industry_prosperity_monthly LIMIT 1"
    response = run(signed_in(bob), sql)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<script>alert(1)" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "\\u003Cscript\\u003E" in body  # the chart's JSON is escaped for a script element too


def test_the_grid_shows_the_workbench_rows_and_says_more_exist(bob, subscribed, settings):
    settings.WORKBENCH_ROWS = 3
    response = run(signed_in(bob), "SELECT * FROM industry_prosperity_monthly")
    assert response.status_code == 200
    assert len(grid_rows(response)) == 3
    assert "more rows exist" in response.content.decode()


def test_a_refused_quota_is_shown_with_its_code_and_status(bob, subscribed, plan):
    plan.queries_per_day = 1
    plan.save()
    client = signed_in(bob)
    assert run(client, INDUSTRY_SQL).status_code == 200
    refused = run(client, INDUSTRY_SQL)
    assert refused.status_code == 429
    assert 'class="error-code">quota_exceeded<' in refused.content.decode()


def test_empty_and_oversized_queries_are_clear_errors(bob, subscribed):
    client = signed_in(bob)
    for sql, status in (("   ", 400), ("SELECT 1 " + "x" * 100_001, 400)):
        response = run(client, sql)
        assert response.status_code == status
        assert 'class="error-code">invalid_request<' in response.content.decode()


# --- exports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_an_export_is_the_whole_result_as_a_file(fmt, client, bob, fund, subscribed, settings):
    settings.WORKBENCH_ROWS = 2  # the export is not bound by what the page shows
    sql = "SELECT csi_industry, gmv FROM industry_prosperity_monthly ORDER BY csi_industry, gmv"
    response = signed_in(bob).post("/workbench/export", {"sql": sql, "format": fmt})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="query-')
    data = b"".join(response.streaming_content)
    table = {
        "csv": lambda: pa_csv.read_csv(io.BytesIO(data)),
        "arrow": lambda: ipc.open_stream(data).read_all(),
        "parquet": lambda: pq.read_table(io.BytesIO(data)),
    }[fmt]()
    expected = api_rows(client, bearer_token(fund), sql)["rows"]
    assert table.num_rows == len(expected) > 2
    assert table.column("gmv").to_pylist() == [row[1] for row in expected]
    assert AuditEvent.objects.filter(action="query.run", actor_id="bob@fund.example", outcome="success").count() == 1


def test_an_unknown_export_format_is_a_clear_error(bob, subscribed):
    response = signed_in(bob).post("/workbench/export", {"sql": INDUSTRY_SQL, "format": "xlsx"})
    assert response.status_code == 400
    assert 'class="error-code">invalid_request<' in response.content.decode()


# --- saved queries and history --------------------------------------------------------------------


def save(client, title, sql=INDUSTRY_SQL, shared=False):
    data = {"sql": sql, "title": title, **({"shared": "1"} if shared else {})}
    response = client.post("/workbench/saved", data)
    assert response.status_code == 302, response.content
    return response["Location"]


def test_a_saved_query_has_a_stable_url_private_to_its_owner_unless_shared(alice, bob, dave, fund, bank, subscribed):
    bobs = signed_in(bob)
    private = save(bobs, "Industry GMV")
    shared = save(bobs, "Channels", CARDS_SQL, shared=True)
    assert bobs.get(private).status_code == 200
    assert "Industry GMV" in bobs.get(private).content.decode()

    alices = signed_in(alice)
    assert alices.get(private).status_code == 404
    page = alices.get(shared)
    assert page.status_code == 200 and "Channels" in page.content.decode()
    assert alices.post(shared, {"action": "delete"}).status_code == 403  # only its owner changes it
    assert signed_in(dave).get(shared).status_code == 404  # another institution
    assert signed_in(bob).get(f"/workbench/saved/{uuid.uuid4()}/").status_code == 404

    # Whoever runs a shared query runs it as themselves.
    assert run(alices, CARDS_SQL).status_code == 200
    assert AuditEvent.objects.filter(action="query.run", actor_id="alice@fund.example").exists()
    assert AuditEvent.objects.filter(action="query.save", actor_id="bob@fund.example").count() == 2


def test_the_owner_updates_and_deletes_a_saved_query(bob, subscribed):
    client = signed_in(bob)
    url = save(client, "Draft")
    saved = SavedQuery.objects.get()
    response = client.post(url, {"action": "update", "sql": CARDS_SQL, "title": "Final", "shared": "1"})
    assert response.status_code == 302
    saved.refresh_from_db()
    assert (saved.title, saved.sql, saved.shared) == ("Final", CARDS_SQL, True)
    assert client.post(url, {"action": "delete"}).status_code == 302
    assert not SavedQuery.objects.exists()
    assert client.get(url).status_code == 404


def test_a_save_needs_a_title(bob, subscribed):
    response = signed_in(bob).post("/workbench/saved", {"sql": INDUSTRY_SQL, "title": " "})
    assert response.status_code == 400
    assert not SavedQuery.objects.exists()


def test_the_history_shows_only_the_users_own_queries(alice, bob, subscribed):
    run(signed_in(bob), INDUSTRY_SQL)
    run(signed_in(alice), CARDS_SQL)
    page = signed_in(bob).get("/workbench/").content.decode()
    history = page[page.index('id="history-title"') :]
    assert "SUM(gmv)" in history and "card_transactions" not in history


# --- jobs ------------------------------------------------------------------------------------------


def test_a_job_from_the_workbench_runs_for_the_user_and_its_result_downloads(bob, alice, dave, subscribed):
    client = signed_in(bob)
    response = client.post("/workbench/jobs", {"sql": INDUSTRY_SQL, "format": "parquet"})
    assert response.status_code == 302
    job = QueryJob.objects.get()
    assert (job.username, job.client_id, job.state) == ("bob@fund.example", "", "queued")
    assert client.get(f"/workbench/jobs/{job.pk}/?format=json").json()["state"] == "queued"

    run_query_job.apply(args=[str(job.pk)])
    state = client.get(f"/workbench/jobs/{job.pk}/?format=json").json()
    assert state["state"] == "succeeded" and state["finished"] and state["rows_written"] > 0
    download = client.get(f"/workbench/jobs/{job.pk}/result")
    assert download.status_code == 200
    assert pq.read_table(io.BytesIO(b"".join(download.streaming_content))).num_rows == state["rows_written"]
    assert signed_in(dave).get(f"/workbench/jobs/{job.pk}/").status_code == 404
    for action in ("query.job_submit", "query.run", "query.job_download"):
        event = AuditEvent.objects.filter(action=action).latest("seq")
        assert (event.actor_type, event.actor_id) == ("user", "bob@fund.example"), action


def test_a_queued_job_can_be_cancelled_from_its_page(bob, subscribed):
    client = signed_in(bob)
    client.post("/workbench/jobs", {"sql": INDUSTRY_SQL, "format": "csv"})
    job = QueryJob.objects.get()
    assert client.post(f"/workbench/jobs/{job.pk}/cancel").status_code == 302
    job.refresh_from_db()
    assert job.state == "cancelled"
    run_query_job.apply(args=[str(job.pk)])  # a cancelled job never starts
    assert not AuditEvent.objects.filter(action="query.run").exists()


def test_an_arrow_export_keeps_types(bob, subscribed):
    response = signed_in(bob).post("/workbench/export", {"sql": INDUSTRY_SQL, "format": "arrow"})
    table = ipc.open_stream(b"".join(response.streaming_content)).read_all()
    assert pa.types.is_floating(table.schema.field("gmv").type) or pa.types.is_integer(table.schema.field("gmv").type)
