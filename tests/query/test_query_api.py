"""POST /api/v1/query: OAuth, grants, versions, quotas, audit and formats around the SQL gateway.

The fund (alice's institution) and the bank (dave's) subscribe to the demo
datasets; industry_prosperity_monthly is open, card_transactions aggregate (k = 10).
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from catalog_support import AGGREGATE_K, CHANNEL_BUYERS, approved, auth, bearer_token, industry_table, publish_table
from django.utils import timezone

from access import subscriptions
from audit.models import AuditEvent
from catalog.models import DatasetVersion
from datasets.spec import Mode
from quotas.models import UsageDaily

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


@pytest.fixture
def fund_subscriptions(fund, catalog, plan):
    return {
        "industry": approved(fund, catalog.industry, plan, [Mode.QUERY]),
        "cards": approved(fund, catalog.cards, plan, [Mode.QUERY]),
    }


@pytest.fixture
def token(fund, fund_subscriptions):
    return bearer_token(fund)


def post(client, token, sql, **body):
    headers = auth(token) if token else {}
    return client.post("/api/v1/query", {"sql": sql, **body}, content_type="application/json", **headers)


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def rows_of(response) -> dict:
    assert response.status_code == 200, response.content
    return json.loads(content(response))


def error_code(response) -> str:
    return response.json()["error"]["code"]


def events(action: str, **filters):
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("seq"))


# --- authentication ---------------------------------------------------------------------------


def test_a_token_is_required(client, catalog):
    response = post(client, None, INDUSTRY_SQL)
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"


def test_the_query_scope_is_required(client, fund, fund_subscriptions):
    response = post(client, bearer_token(fund, scopes="catalog:read"), INDUSTRY_SQL)
    assert response.status_code == 403
    assert error_code(response) == "insufficient_scope"


# --- formats ----------------------------------------------------------------------------------


def test_json_carries_columns_rows_and_the_truncation_flag(client, token):
    response = post(client, token, INDUSTRY_SQL)
    assert response["Content-Type"] == "application/json"
    assert response["X-Vitamin-Versions"] == "industry_prosperity_monthly=1"
    body = rows_of(response)
    assert body["columns"] == [{"name": "csi_industry", "type": "VARCHAR"}, {"name": "gmv", "type": "DOUBLE"}]
    assert sorted(body["rows"]) == sorted([[row["csi_industry"], row["gmv"]] for row in EXPECTED])
    assert body["truncated"] is False


EXPECTED = [{"csi_industry": "主要消费", "gmv": 3006.0}, {"csi_industry": "信息技术", "gmv": 3009.0}]


@pytest.mark.parametrize(
    ("fmt", "media_type", "read"),
    [
        ("arrow", "application/vnd.apache.arrow.stream", lambda data: ipc.open_stream(data).read_all()),
        ("parquet", "application/vnd.apache.parquet", lambda data: pq.read_table(io.BytesIO(data))),
        ("csv", "text/csv; charset=utf-8", lambda data: pa_csv.read_csv(io.BytesIO(data))),
    ],
)
def test_binary_formats_round_trip_through_pyarrow(client, token, fmt, media_type, read):
    response = post(client, token, INDUSTRY_SQL, format=fmt)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == media_type
    table = read(content(response))
    assert table.column_names == ["csi_industry", "gmv"]
    assert sorted(table.to_pylist(), key=str) == sorted(EXPECTED, key=str)


def test_arrow_and_parquet_say_whether_the_result_was_truncated(client, token):
    stream = ipc.open_stream(content(post(client, token, INDUSTRY_SQL, format="arrow", max_rows=1)))
    batches = []
    metadata = {}
    while True:
        try:
            batch, custom = stream.read_next_batch_with_custom_metadata()
        except StopIteration:
            break
        batches.append(batch)
        metadata.update(dict(custom or {}))
    assert sum(batch.num_rows for batch in batches) == 1
    assert metadata[b"vitamin.truncated"] == b"true"
    parquet = pq.ParquetFile(io.BytesIO(content(post(client, token, INDUSTRY_SQL, format="parquet"))))
    assert parquet.metadata.metadata[b"vitamin.truncated"] == b"false"


def test_invalid_requests_are_400_invalid_request(client, token):
    for body in ({"format": "xml"}, {"max_rows": 0}, {"versions": {"industry_prosperity_monthly": "latest"}}):
        response = post(client, token, INDUSTRY_SQL, **body)
        assert response.status_code == 400 and error_code(response) == "invalid_request", body
    response = client.post("/api/v1/query", {}, content_type="application/json", **auth(token))
    assert response.status_code == 400 and error_code(response) == "invalid_request"


# --- grants and versions ----------------------------------------------------------------------


def test_a_dataset_without_subscription_is_403(client, bank, catalog):
    response = post(client, bearer_token(bank), INDUSTRY_SQL)
    assert response.status_code == 403
    assert error_code(response) == "not_subscribed"
    [event] = events("query.run")
    assert event.outcome == "denied" and event.details["code"] == "not_subscribed"
    assert event.institution == str(bank.pk)
    assert not events("query.start")


def test_a_revoked_subscription_is_denied_on_the_very_next_query(client, token, fund_subscriptions):
    rows_of(post(client, token, INDUSTRY_SQL))
    subscriptions.revoke(fund_subscriptions["industry"], reason="Contract ended.")
    response = post(client, token, INDUSTRY_SQL)
    assert response.status_code == 403
    assert error_code(response) == "subscription_revoked"


def test_a_version_whose_rules_cannot_be_read_is_not_served(client, token, catalog):
    """Fail closed: without the spec it was built from, a version's tier and roles are unknown."""
    catalog.industry.versions.update(spec={"not": "a spec"}, spec_fingerprint="")
    response = post(client, token, INDUSTRY_SQL)
    assert response.status_code == 503 and error_code(response) == "dataset_unavailable"
    assert events("query.run")[-1].outcome == "failure"


def test_versions_can_be_chosen_unless_pinned(client, token, catalog, store_url, fund_subscriptions):
    newer = industry_table().append_column("extra", pa.array([1] * 6))
    publish_table(catalog.industry, newer, store_url)
    sql = "SELECT * FROM industry_prosperity_monthly"
    assert "extra" in [c["name"] for c in rows_of(post(client, token, sql))["columns"]]
    old = rows_of(post(client, token, sql, versions={"industry_prosperity_monthly": 1}))
    assert "extra" not in [c["name"] for c in old["columns"]]

    missing = post(client, token, sql, versions={"industry_prosperity_monthly": 9})
    assert (missing.status_code, error_code(missing)) == (404, "version_not_found")
    DatasetVersion.objects.filter(dataset=catalog.industry, number=1).update(
        status=DatasetVersion.Status.RETIRED, retired_at=timezone.now()
    )
    retired = post(client, token, sql, versions={"industry_prosperity_monthly": 1})
    assert (retired.status_code, error_code(retired)) == (409, "version_retired")
    unused = post(client, token, sql, versions={"card_transactions": 1})
    assert (unused.status_code, error_code(unused)) == (400, "invalid_request")

    subscription = fund_subscriptions["industry"]
    subscription.pinned_version = DatasetVersion.objects.get(dataset=catalog.industry, number=2)
    subscription.save(update_fields=["pinned_version"])
    pinned = post(client, token, sql, versions={"industry_prosperity_monthly": 1})
    assert (pinned.status_code, error_code(pinned)) == (409, "version_pinned")
    latest = post(client, token, sql)
    assert latest["X-Vitamin-Versions"] == "industry_prosperity_monthly=2"
    assert len(rows_of(latest)["rows"]) == 6


# --- the gateway's rules through the API ------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM read_parquet('/etc/passwd')", "table_function_not_allowed"),
        ("SELECT 1; DROP TABLE industry_prosperity_monthly", "multiple_statements"),
        ("ATTACH '/tmp/x.db' AS x", "attach_not_allowed"),
        ("SET memory_limit = '100GB'", "settings_not_allowed"),
        ("SELECT * FROM information_schema.tables", "catalog_not_allowed"),
        ("SELEC 1", "syntax_error"),
    ],
)
def test_escape_attempts_are_refused_with_the_engines_code(client, token, sql, code):
    response = post(client, token, sql)
    assert response.status_code == 400, response.content
    assert error_code(response) == code
    assert "/etc" not in response.json()["error"]["message"]
    assert "/tmp" not in response.json()["error"]["message"]


def test_an_error_found_while_running_is_400_query_error_without_server_paths(client, token, store_url):
    response = post(client, token, "SELECT no_such_column FROM industry_prosperity_monthly")
    assert response.status_code == 400
    assert error_code(response) == "query_error"
    assert store_url not in response.content.decode()


def test_an_aggregate_dataset_drops_groups_below_k(client, token):
    sql = "SELECT channel, COUNT(DISTINCT buyer) AS buyers FROM card_transactions GROUP BY channel"
    body = rows_of(post(client, token, sql))
    kept = {channel: buyers for channel, buyers in body["rows"]}
    assert kept == {channel: n for channel, n in CHANNEL_BUYERS.items() if n >= AGGREGATE_K}
    response = post(client, token, "SELECT buyer FROM card_transactions")
    assert response.status_code == 400


def test_identifier_columns_are_re_keyed_per_institution(client, token, bank, catalog, store_url, plan):
    # A column the spec does not describe is treated as an identifier: re-keyed, never shown as stored.
    table = industry_table().append_column("customer", pa.array([f"pseudonym-{i}" for i in range(6)]))
    publish_table(catalog.industry, table, store_url)
    approved(bank, catalog.industry, plan, [Mode.QUERY])
    sql = "SELECT customer FROM industry_prosperity_monthly ORDER BY month, csi_industry"
    fund_values = [row[0] for row in rows_of(post(client, token, sql))["rows"]]
    bank_values = [row[0] for row in rows_of(post(client, bearer_token(bank), sql))["rows"]]
    assert len(set(fund_values)) == 6 and len(set(bank_values)) == 6
    assert not set(fund_values) & set(bank_values)
    assert not set(fund_values) & {f"pseudonym-{i}" for i in range(6)}
    assert fund_values == [row[0] for row in rows_of(post(client, token, sql))["rows"]]


# --- limits and quotas ------------------------------------------------------------------------


def test_the_plans_row_cap_truncates_and_a_request_can_only_lower_it(client, token, plan):
    plan.max_result_rows = 3
    plan.save()
    sql = "SELECT * FROM industry_prosperity_monthly"
    capped = post(client, token, sql, max_rows=1000)
    assert capped["X-Vitamin-Max-Rows"] == "3"
    body = rows_of(capped)
    assert len(body["rows"]) == 3 and body["truncated"] is True
    lowered = rows_of(post(client, token, sql, max_rows=2))
    assert len(lowered["rows"]) == 2 and lowered["truncated"] is True


def test_queries_per_day_exceeded_is_429_before_running(client, token, plan):
    plan.queries_per_day = 2
    plan.save()
    for _ in range(2):
        rows_of(post(client, token, INDUSTRY_SQL))
    refused = post(client, token, INDUSTRY_SQL)
    assert refused.status_code == 429
    assert error_code(refused) == "quota_exceeded"
    assert refused.json()["error"]["details"]["metric"] == "queries"
    assert int(refused["Retry-After"]) > 0
    assert "RateLimit" in refused or "RateLimit-Limit" in refused
    assert len(events("query.start")) == 2
    assert [e.outcome for e in events("query.run")] == ["success", "success", "denied"]


def test_rows_are_charged_after_the_query_so_the_next_one_is_refused(client, token, plan):
    plan.rows_returned_per_day = 5
    plan.save()
    sql = "SELECT * FROM industry_prosperity_monthly"
    assert len(rows_of(post(client, token, sql))["rows"]) == 6  # crosses the limit: completes
    refused = post(client, token, sql)
    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["metric"] == "rows_returned"


def test_the_concurrency_limit_is_429_while_a_query_streams(client, token, plan):
    assert plan.concurrent_queries == 1
    streaming = post(client, token, INDUSTRY_SQL, format="arrow")
    assert streaming.status_code == 200
    second = post(client, token, INDUSTRY_SQL)
    assert second.status_code == 429
    assert second.json()["error"]["details"]["metric"] == "concurrent_queries"
    content(streaming)  # finishing the stream gives the slot back
    assert rows_of(post(client, token, INDUSTRY_SQL))["rows"]


def test_an_institution_runs_at_most_its_concurrency_across_all_its_subscriptions(
    client, token, bank, catalog, plan, settings
):
    settings.QUERY_CONCURRENT_PER_INSTITUTION = 1
    cards_sql = "SELECT channel, COUNT(DISTINCT buyer) AS buyers FROM card_transactions GROUP BY channel"
    streaming = post(client, token, INDUSTRY_SQL, format="arrow")  # the industry subscription's slot is free
    assert streaming.status_code == 200

    other_subscription = post(client, token, cards_sql)

    assert other_subscription.status_code == 429
    details = other_subscription.json()["error"]["details"]
    assert details["metric"] == "concurrent_queries" and details["scope"] == "institution"
    assert "Retry-After" in other_subscription
    approved(bank, catalog.industry, plan, [Mode.QUERY])
    assert rows_of(post(client, bearer_token(bank), INDUSTRY_SQL))["rows"]  # another institution is not held up
    content(streaming)
    assert rows_of(post(client, token, cards_sql))["rows"]


def test_slots_come_back_even_when_the_closing_transaction_fails(client, token, plan, monkeypatch, caplog):
    import sys
    from contextlib import contextmanager

    from django.db import DatabaseError, transaction

    real_atomic = transaction.atomic

    @contextmanager
    def rolled_back(*args, **kwargs):
        with real_atomic(*args, **kwargs):
            yield
            raise DatabaseError("could not commit")  # everything in it, the release too, is undone

    def atomic(*args, **kwargs):
        if sys._getframe(1).f_code.co_name == "_record_end":  # only the transaction that closes a query
            return rolled_back(*args, **kwargs)
        return real_atomic(*args, **kwargs)

    assert plan.concurrent_queries == 1
    monkeypatch.setattr(transaction, "atomic", atomic)
    rows = rows_of(post(client, token, INDUSTRY_SQL))["rows"]
    assert rows
    monkeypatch.setattr(transaction, "atomic", real_atomic)

    assert "recording the end of a query failed" in caplog.text
    # Each part again on its own: the rows metered once, `query.run` on record, the only slot given back.
    ran = AuditEvent.objects.filter(action="query.run").order_by("-seq").first()
    assert ran is not None and ran.outcome == "success" and ran.details["rows"] == len(rows)
    assert UsageDaily.objects.get(metric="rows_returned").amount == len(rows)
    assert rows_of(post(client, token, INDUSTRY_SQL))["rows"]


def test_a_response_dropped_unread_gives_its_slot_back(client, token, plan):
    import gc

    assert plan.concurrent_queries == 1
    unread = post(client, token, INDUSTRY_SQL, format="parquet")
    assert unread.status_code == 200
    del unread
    gc.collect()
    assert rows_of(post(client, token, INDUSTRY_SQL))["rows"]
    assert [event.outcome for event in events("query.run")] == ["cancelled", "success"]


# --- audit --------------------------------------------------------------------------------------


def test_every_query_is_audited_with_its_outcome(client, token, fund):
    rows_of(post(client, token, INDUSTRY_SQL))
    post(client, token, "SELECT 1; SELECT 2")
    post(client, token, "SELECT no_such_column FROM industry_prosperity_monthly")
    accepted, rejected, failed = events("query.run")
    assert accepted.outcome == "success" and accepted.details["rows"] == 2
    assert accepted.details["datasets"] == {"industry_prosperity_monthly": 1}
    assert accepted.details["sql"] == INDUSTRY_SQL and len(accepted.details["sql_sha256"]) == 64
    assert accepted.details["bytes_scanned"] > 0
    assert accepted.institution == str(fund.pk) and accepted.actor_type == "client"
    assert (rejected.outcome, rejected.details["code"]) == ("denied", "multiple_statements")
    assert (failed.outcome, failed.details["code"]) == ("failure", "query_error")
    started = [event.details["sql"] for event in events("query.start")]  # the rejected one never started
    assert started == [INDUSTRY_SQL, "SELECT no_such_column FROM industry_prosperity_monthly"]


def test_a_query_that_cannot_be_audited_does_not_run(client, token, monkeypatch):
    import access.metered

    real_record = access.metered.record

    def failing_start(action, **kwargs):
        if action == "query.start":
            raise RuntimeError("audit table unavailable")
        return real_record(action, **kwargs)

    monkeypatch.setattr(access.metered, "record", failing_start)  # the metered use records the start
    response = post(client, token, INDUSTRY_SQL)
    assert response.status_code == 503
    assert error_code(response) == "audit_unavailable"
    assert not events("query.run", outcome="success")
    monkeypatch.undo()
    assert rows_of(post(client, token, INDUSTRY_SQL))["rows"]  # the slot and the day's query were given back


def test_a_query_sent_to_a_worker_while_its_start_was_written_is_stopped_when_that_write_fails(
    client, token, monkeypatch
):
    import access.metered
    from query.service import get_gateway

    gateway = get_gateway()
    rows_of(post(client, token, INDUSTRY_SQL))  # a worker is idle now: the next start sends its query early
    sent = []
    real_submit = gateway.submit

    def spying_submit(*args, **kwargs):
        sent.append(real_submit(*args, **kwargs))
        return sent[-1]

    def failing_start(action, **kwargs):
        if action == "query.start":
            raise RuntimeError("audit table unavailable")
        raise AssertionError(f"nothing else is recorded here: {action}")

    monkeypatch.setattr(gateway, "submit", spying_submit)
    monkeypatch.setattr(access.metered, "record", failing_start)
    response = post(client, token, INDUSTRY_SQL)

    assert response.status_code == 503 and error_code(response) == "audit_unavailable"
    assert len(sent) == 1 and sent[0] is not None  # the query had reached a worker before the write failed
    assert not gateway._pool._busy  # ... which was stopped and given back
    monkeypatch.undo()
    assert rows_of(post(client, token, INDUSTRY_SQL))["rows"]


def test_a_query_refused_its_slot_was_prepared_by_a_worker_but_never_told_to_run(client, token, plan, monkeypatch):
    from query.service import get_gateway

    assert plan.concurrent_queries == 1
    gateway = get_gateway()
    workers = [gateway._pool.acquire(), gateway._pool.acquire()]  # two up: one streams, one is idle
    for worker in workers:
        gateway._pool.release(worker)
    streaming = post(client, token, INDUSTRY_SQL, format="csv")  # holds the one slot until read
    sent, told = [], []
    real_submit = gateway.submit

    def spying_submit(*args, **kwargs):
        submitted = real_submit(*args, **kwargs)
        if submitted is not None:
            real_go = submitted.go
            submitted.go = lambda read: (told.append(read), real_go(read))
        sent.append((kwargs.get("read"), submitted))
        return submitted

    monkeypatch.setattr(gateway, "submit", spying_submit)
    refused = post(client, token, INDUSTRY_SQL)
    assert refused.status_code == 429 and refused.json()["error"]["details"]["metric"] == "concurrent_queries"
    assert len(sent) == 1 and sent[0][0] is None and sent[0][1] is not None  # sent before the start, without a read
    assert not told  # refused: never told to run
    assert len(gateway._pool._busy) == 1  # its worker given back; the streaming query's still busy
    assert content(streaming)
    monkeypatch.undo()
    assert rows_of(post(client, token, INDUSTRY_SQL))["rows"]


def test_the_end_of_a_query_is_recorded_when_its_stream_is_closed(fund, alice, fund_subscriptions, plan):
    from query.service import run_query
    from vitamin.refusals import Refusal

    assert plan.concurrent_queries == 1
    run = run_query(institution_id=fund.pk, username=alice.get_username(), sql=INDUSTRY_SQL)
    body = json.loads(b"".join(run.chunks))  # every byte out; a WSGI server sends them all before it closes
    assert body["rows"]
    assert not events("query.run")  # recorded on close, so the partner does not wait for that commit
    with pytest.raises(Refusal) as refused:  # its slot is held until then
        run_query(institution_id=fund.pk, username=alice.get_username(), sql=INDUSTRY_SQL)
    assert refused.value.code == "quota_exceeded" and refused.value.details["metric"] == "concurrent_queries"
    run.chunks.close()
    (refused_event, ended) = events("query.run")
    assert (
        refused_event.outcome == "denied" and ended.outcome == "success" and ended.details["rows"] == len(body["rows"])
    )
    assert UsageDaily.objects.get(metric="rows_returned").amount == len(body["rows"])
    run.chunks.close()  # once
    assert len(events("query.run")) == 2
