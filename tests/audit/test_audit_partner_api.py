"""The partner's own audit trail over the API: only its own events, exactly the filtered ones, pages that
survive appends, hashes a partner recomputes with the documented recipe, and anchors that reveal nothing."""

from __future__ import annotations

import ast
import re
from datetime import timedelta

import pytest
from catalog_support import auth, bearer_token
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit import verification
from audit.actors import by_client_id
from audit.models import AuditEvent
from audit.service import record
from testenv import REPO_DIR

EVENTS = "/api/v1/audit/events"
VERIFY = "/api/v1/audit/verify"
ACTIONS = ["query.run", "query.job_submit", "lookup.batch", "token.issue", "subscription.approve"]
OUTCOMES = ["success", "denied", "failure"]
DATASETS = ["industry_prosperity_monthly", "card_transactions", "credit_profiles"]


@pytest.fixture(autouse=True)
def fresh_verification(settings):
    settings.AUDIT_READS_PER_MINUTE = 10**6
    verification.forget()
    yield
    verification.forget()


@pytest.fixture
def reader(fund):
    return bearer_token(fund, scopes="audit:read")


def get(client, token, path, **params):
    return client.get(path, params, **auth(token))


def read_all(client, token, **params) -> list[dict]:
    """Every page, following the cursor."""
    records, cursor = [], None
    while True:
        query = {**params, **({"before_seq": cursor} if cursor else {})}
        response = get(client, token, EVENTS, **query)
        assert response.status_code == 200, response.content
        body = response.json()
        records += body["results"]
        cursor = body["next_before_seq"]
        if cursor is None:
            return records


def target_names(target: str, slug: str) -> bool:
    return any(part == f"dataset:{slug}" or part.startswith(f"dataset:{slug}@") for part in target.split(","))


def straight_filter(records: list[dict], institution: str, filters: dict) -> list[int]:
    """The seqs a plain Python reading of the filters keeps, newest first."""
    kept = []
    for rec in records:
        if rec["institution"] != institution:
            continue
        action = filters.get("action")
        if action and not (rec["action"].startswith(action) if action.endswith(".") else rec["action"] == action):
            continue
        if any(filters.get(name) and rec[name] != filters[name] for name in ("outcome", "actor_type", "actor_id")):
            continue
        if filters.get("dataset") and not target_names(rec["target"], filters["dataset"]):
            continue
        if "after_seq" in filters and rec["seq"] <= filters["after_seq"]:
            continue
        if "since" in filters and rec["timestamp"] < filters["since"]:
            continue
        if "until" in filters and rec["timestamp"] >= filters["until"]:
            continue
        kept.append(rec["seq"])
    return sorted(kept, reverse=True)


_event = st.tuples(
    st.sampled_from(["fund", "bank", "", "999"]),
    st.sampled_from(ACTIONS),
    st.sampled_from(OUTCOMES),
    st.sampled_from(["client", "user", "system"]),
    st.sampled_from(["c-1", "c-2", "bob@fund.example"]),
    st.lists(st.sampled_from([*DATASETS, "card_transactions@v3", "credit"]), max_size=3),
)


@pytest.mark.django_db
@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), events=st.lists(_event, max_size=12))
def test_a_partner_gets_exactly_its_own_filtered_events_and_never_another_institutions(
    client, fund, bank, reader, data, events
):
    ids = {"fund": str(fund.pk), "bank": str(bank.pk)}
    for institution, action, outcome, actor_type, actor_id, targets in events:
        record(
            action,
            outcome=outcome,
            actor_type=actor_type,
            actor_id=actor_id,
            institution=ids.get(institution, institution),
            target=",".join(f"dataset:{name}" for name in targets),
        )
    every = [event.to_record() for event in AuditEvent.objects.order_by("seq")]
    filters = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "action": st.sampled_from([*ACTIONS, "query.", "lookup.", "token.issue."]),
                "outcome": st.sampled_from(OUTCOMES),
                "actor_type": st.sampled_from(["client", "user", "system"]),
                "actor_id": st.sampled_from(["c-1", "c-2", "bob@fund.example"]),
                "dataset": st.sampled_from([*DATASETS, "credit"]),
                "after_seq": st.integers(1, 10**4),
                "since": st.integers(0, 10**4),
                "until": st.integers(0, 10**4),
            },
        )
    )
    # Positions in the log, drawn independently of what the log holds (Hypothesis replays draws).
    filters["after_seq"] = filters["after_seq"] % (len(every) + 2) + 1 if "after_seq" in filters else None
    for name in ("since", "until"):
        if name in filters:
            filters[name] = every[filters[name] % len(every)]["timestamp"]
    if filters["after_seq"] is None:
        del filters["after_seq"]
    if "since" in filters and "until" in filters and filters["since"] >= filters["until"]:
        del filters["until"]
    page_size = data.draw(st.integers(4, 25))

    records = read_all(client, reader, page_size=page_size, **filters)

    assert {rec["institution"] for rec in records} <= {str(fund.pk)}
    assert [rec["seq"] for rec in records] == straight_filter(every, str(fund.pk), filters)


@pytest.mark.django_db
def test_the_answer_is_each_events_full_record(client, fund, reader):
    event = record(
        "query.run",
        **by_client_id("c-1", fund.pk),
        target="dataset:card_transactions",
        details={"rows": 3, "note": "第1次"},
    )

    body = get(client, reader, EVENTS, action="query.run").json()

    assert body["results"] == [event.to_record()]
    assert body["next_before_seq"] is None and body["next"] is None


@pytest.mark.django_db
def test_a_token_without_audit_read_is_refused_and_the_refusal_recorded(client, fund):
    token = bearer_token(fund, scopes="catalog:read query")

    for path in (EVENTS, VERIFY):
        response = get(client, token, path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "insufficient_scope"
    assert AuditEvent.objects.filter(action="api.denied", details__contains="audit:read").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"action": "Query.Run"},
        {"action": "query..run"},
        {"action": "q" * 101},
        {"outcome": "ok!"},
        {"actor_type": "robot"},
        {"dataset": "../etc"},
        {"since": "yesterday"},
        {"until": "2025-13-01"},
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "9999-12-31T23:59:59-01:00"},
        {"since": "2025-03-02", "until": "2025-03-01"},
        {"after_seq": "0"},
        {"before_seq": "-1"},
        {"before_seq": "1e3"},
        {"page_size": "0"},
        {"page_size": "501"},
        {"institution": "2"},
        {"actor": "bob"},
        {"actor_id": "a\x00b"},
        {"actor_id": "x" * 256},
    ],
)
def test_bad_filters_are_refused_with_invalid_request(client, fund, reader, params):
    response = get(client, reader, EVENTS, **params)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in ("invalid_request", "malformed_request")


@pytest.mark.django_db
@pytest.mark.parametrize("anchor", ["12", "0:" + "a" * 64, "1:" + "g" * 64, "1:abc"])
def test_a_malformed_anchor_is_refused(client, fund, reader, anchor):
    response = get(client, reader, VERIFY, anchor=anchor)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.django_db
def test_pages_lose_and_repeat_nothing_while_events_are_appended(client, fund, bank, reader):
    mine = [record("query.run", **by_client_id("c-1", fund.pk), target=f"dataset:{n}") for n in range(10)]
    before = set(AuditEvent.objects.filter(institution=str(fund.pk)).values_list("seq", flat=True))
    seen, cursor = [], None
    while True:
        body = get(client, reader, EVENTS, page_size=3, **({"before_seq": cursor} if cursor else {})).json()
        seen += [rec["seq"] for rec in body["results"]]
        # Others and the fund itself keep appending between pages (each read is appended too).
        record("query.run", **by_client_id("c-1", fund.pk), target="dataset:late")
        record("query.run", **by_client_id("c-9", bank.pk), target="dataset:late")
        cursor = body["next_before_seq"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen))
    assert set(seen) == before
    assert seen == sorted(seen, reverse=True)
    assert {event.seq for event in mine} <= set(seen)


def documented_recipe():
    """The `event_hash` function of docs/audit.md's example, exactly as written there."""
    text = (REPO_DIR / "docs" / "audit.md").read_text(encoding="utf-8")
    block = next(code for code in re.findall(r"```python\n(.*?)```", text, re.S) if "def event_hash" in code)
    tree = ast.parse(block)
    kept = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom) and node.names[0].name in ("hashlib", "json")
    ]
    kept += [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "event_hash"]
    assert len(kept) == 3, "docs/audit.md's recipe imports hashlib and json and defines event_hash"
    namespace: dict = {}
    exec(compile(ast.Module(body=kept, type_ignores=[]), "docs/audit.md", "exec"), namespace)  # noqa: S102
    return namespace["event_hash"]


@pytest.mark.django_db
def test_a_partner_recomputes_every_returned_hash_with_the_documented_recipe(client, fund, reader):
    record(
        "query.run",
        **by_client_id("c-1", fund.pk),
        target="dataset:card_transactions,dataset:credit_profiles",
        details={"sql": "SELECT 1 -- ünïcødé 数据", "rows": 1, "ratio": 0.1, "nested": {"b": [1, None], "a": True}},
    )
    record("lookup.batch", **by_client_id("c-1", fund.pk), outcome="denied", details={"code": "quota_exceeded"})
    event_hash = documented_recipe()

    records = read_all(client, reader)

    assert len(records) >= 3
    for rec in records:
        assert event_hash(rec) == rec["hash"], rec["seq"]
    tampered = {**records[0], "outcome": "denied" if records[0]["outcome"] != "denied" else "success"}
    assert event_hash(tampered) != records[0]["hash"]


@pytest.mark.django_db
def test_reads_are_recorded_and_throttled_per_institution(client, fund, bank, reader, settings):
    settings.AUDIT_READS_PER_MINUTE = 2
    other_reader = bearer_token(fund, scopes="audit:read")

    assert get(client, reader, EVENTS, action="query.").status_code == 200
    assert get(client, other_reader, VERIFY).status_code == 200
    refused = get(client, reader, EVENTS)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1
    reads = list(AuditEvent.objects.filter(action="audit.read").order_by("seq"))
    assert [(event.details["view"], event.outcome) for event in reads] == [
        ("events", "success"),
        ("verify", "success"),
        ("events", "denied"),
    ]
    assert {event.institution for event in reads} == {str(fund.pk)}
    assert reads[0].actor_type == "client" and reads[0].details["filters"] == {"action": "query."}
    # Another institution's reads are counted apart.
    assert get(client, bearer_token(bank, scopes="audit:read"), EVENTS).status_code == 200


@pytest.mark.django_db
def test_verify_answers_the_head_and_an_own_anchor_is_ok(client, fund, reader):
    mine = record("query.run", **by_client_id("c-1", fund.pk))
    head = AuditEvent.objects.order_by("-seq").first()

    body = get(client, reader, VERIFY, anchor=f"{mine.seq}:{mine.hash}").json()

    assert body["ok"] is True and body["anchor_ok"] is True and body["problem"] is None
    assert body["head"] == f"{head.seq}:{head.hash}"
    assert body["events_checked"] == head.seq


@pytest.mark.django_db
def test_an_edited_chain_is_reported_and_the_anchor_of_the_edited_event_fails(client, fund, reader, tamper):
    mine = [record("query.run", **by_client_id("c-1", fund.pk), target=f"dataset:{n}") for n in range(4)]
    assert get(client, reader, VERIFY).json()["ok"] is True
    tamper.execute("UPDATE audit_auditevent SET target = 'dataset:other' WHERE seq = %s", [mine[1].seq])
    verification.forget()  # else the edit shows at the next full verification (VITAMIN_AUDIT_FULL_VERIFY_SECONDS)

    body = get(client, reader, VERIFY, anchor=f"{mine[1].seq}:{mine[1].hash}").json()

    assert body["ok"] is False
    assert (body["problem"], body["bad_seq"]) == ("hash_mismatch", mine[1].seq)
    assert body["anchor_ok"] is False


def verified_events(client, reader, fund) -> list[AuditEvent]:
    """Three of the fund's events, then a verification that the server remembers (an hour's window)."""
    mine = [record("query.run", **by_client_id("c-1", fund.pk)) for _ in range(3)]
    assert get(client, reader, VERIFY).json()["ok"] is True
    return mine


@pytest.mark.django_db
def test_deleting_the_newest_events_is_reported_by_the_server_that_verified_them(
    client, fund, reader, tamper, settings
):
    settings.AUDIT_FULL_VERIFY_SECONDS = 3600
    mine = verified_events(client, reader, fund)
    tamper.execute("DELETE FROM audit_auditevent WHERE seq >= %s", [mine[1].seq])

    body = get(client, reader, VERIFY, anchor=f"{mine[2].seq}:{mine[2].hash}").json()

    assert body["ok"] is False and body["problem"] == "truncated"
    assert body["anchor_ok"] is False and body["anchor_problem"] == "missing"
    # Later appends do not hide the cut: the remembered head is gone for good.
    record("query.run", **by_client_id("c-1", fund.pk))
    assert get(client, reader, VERIFY).json()["problem"] in ("truncated", "anchor_mismatch")


@pytest.mark.django_db
def test_an_edit_after_the_last_full_verification_is_found_once_it_is_due(client, fund, reader, tamper, settings):
    settings.AUDIT_FULL_VERIFY_SECONDS = 3600
    mine = verified_events(client, reader, fund)
    tamper.execute("UPDATE audit_auditevent SET outcome = 'denied' WHERE seq = %s", [mine[0].seq])
    # Within the window only what was appended since is checked: the documented cost of the bound.
    assert get(client, reader, VERIFY).json()["ok"] is True
    # ... but an anchor on the edited event is checked against the stored event every time.
    assert get(client, reader, VERIFY, anchor=f"{mine[0].seq}:{mine[0].hash}").json()["anchor_ok"] is False

    settings.AUDIT_FULL_VERIFY_SECONDS = 0
    beyond = get(client, reader, VERIFY, anchor=f"{'9' * 30}:{mine[0].hash}").json()
    assert (beyond["anchor_ok"], beyond["anchor_problem"]) == (False, "truncated")
    body = get(client, reader, VERIFY).json()

    assert (body["ok"], body["problem"], body["bad_seq"]) == (False, "hash_mismatch", mine[0].seq)


@pytest.mark.django_db
def test_another_institutions_anchor_reveals_nothing_but_ok(client, fund, bank, reader):
    theirs = record(
        "lookup.batch",
        **by_client_id("c-9", bank.pk),
        target="dataset:credit_profiles",
        details={"secret_note": "bank-only-detail"},
    )

    good = get(client, reader, VERIFY, anchor=f"{theirs.seq}:{theirs.hash}")
    wrong = get(client, reader, VERIFY, anchor=f"{theirs.seq}:{'0' * 64}")

    assert good.json()["anchor_ok"] is True and wrong.json()["anchor_ok"] is False
    for response in (good, wrong):
        text = response.content.decode()
        for secret in ("bank-only-detail", "lookup.batch", "credit_profiles", "c-9", theirs.to_record()["timestamp"]):
            assert secret not in text
        assert set(response.json()) == {
            "ok",
            "head",
            "events_checked",
            "problem",
            "bad_seq",
            "message",
            "fully_verified_at",
            "anchor",
            "anchor_ok",
            "anchor_problem",
        }


@pytest.mark.django_db
def test_the_schema_documents_both_endpoints(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert schema["paths"]["/api/v1/audit/events"]["get"]["operationId"] == "list_audit_events"
    assert schema["paths"]["/api/v1/audit/verify"]["get"]["operationId"] == "verify_audit_chain"


def test_since_and_until_are_utc_without_an_offset():
    from audit.search import AuditFilters

    filters = AuditFilters.parse({"since": "2025-03-01", "until": "2025-03-01T09:00:00+08:00"})

    assert filters.until - filters.since == timedelta(hours=1)
