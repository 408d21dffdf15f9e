"""The audit pages: an institution's trail for its owners and admins, the staff search and its streamed exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from partner_support import make_user

from audit import verification
from audit.actors import by_client_id, by_user
from audit.chain import compute_hash, verify_chain
from audit.models import AuditEvent
from audit.service import record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_verification():
    verification.forget()
    yield
    verification.forget()


@pytest.fixture
def mallory(db):
    return make_user("mallory@elsewhere.example")


@pytest.fixture
def history(fund, bank, bob):
    """Queries by both institutions' clients, a lookup, and a staff decision."""
    return {
        "fund_queries": [
            record("query.run", **by_client_id("fund-tool", fund.pk), target=f"dataset:card_transactions,dataset:d{n}")
            for n in range(3)
        ],
        "bank_query": record("query.run", **by_client_id("bank-tool", bank.pk), target="dataset:card_transactions"),
        "bank_lookup": record("lookup.batch", **by_client_id("bank-tool", bank.pk), target="dataset:credit_profiles"),
        "fund_denied": record("query.run", **by_user(bob, fund.pk), outcome="denied", target="dataset:credit_profiles"),
    }


def exported(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


# --- the staff search ------------------------------------------------------------------------


def test_staff_find_one_institutions_queries_by_institution_and_event(client, olga, fund, history):
    client.force_login(olga)

    page = client.get("/audit/search/", {"institution": fund.pk, "action": "query.run"}).content.decode()

    shown = {event.seq for event in AuditEvent.objects.all() if f'id="event-{event.seq}"' in page}
    assert shown == {event.seq for event in [*history["fund_queries"], history["fund_denied"]]}
    assert "Demo Fund Management Co." in page


def test_staff_filter_by_dataset_outcome_actor_and_time(client, olga, fund, bank, history):
    client.force_login(olga)
    first, last = history["fund_queries"][0], history["fund_denied"]

    def shown(**params) -> set[int]:
        page = client.get("/audit/search/", params).content.decode()
        return {event.seq for event in AuditEvent.objects.all() if f'id="event-{event.seq}"' in page}

    assert shown(dataset="credit_profiles") == {history["bank_lookup"].seq, last.seq}
    assert shown(outcome="denied", action="query.") == {last.seq}
    assert shown(actor_type="client", actor_id="bank-tool") == {history["bank_query"].seq, history["bank_lookup"].seq}
    since, until = first.to_record()["timestamp"], last.to_record()["timestamp"]
    assert shown(since=since, until=until, action="query.run") == {
        *(event.seq for event in history["fund_queries"]),
        history["bank_query"].seq,
    }


def test_a_bad_filter_on_the_search_page_is_a_400_with_a_message(client, olga):
    client.force_login(olga)

    response = client.get("/audit/search/", {"since": "last tuesday"})

    assert response.status_code == 400
    assert "since must be an ISO-8601 time" in response.content.decode()


def test_the_search_pages_through_the_log_newest_first(client, olga, fund):
    client.force_login(olga)
    events = [record("query.run", **by_client_id("fund-tool", fund.pk)) for _ in range(60)]

    first = client.get("/audit/search/", {"action": "query.run"}).content.decode()
    second = client.get("/audit/search/", {"action": "query.run", "before_seq": events[10].seq}).content.decode()

    assert f"before_seq={events[10].seq}" in first
    assert f'id="event-{events[-1].seq}"' in first and f'id="event-{events[9].seq}"' not in first
    assert f'id="event-{events[9].seq}"' in second and f'id="event-{events[10].seq}"' not in second


def test_the_jsonl_export_of_a_time_range_verifies_as_a_chain_slice(client, olga, fund, history):
    client.force_login(olga)
    since = history["fund_queries"][1].to_record()["timestamp"]

    response = client.get("/audit/search/export.jsonl", {"since": since})

    records = [json.loads(line) for line in exported(response).splitlines()]
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    assert records[0]["seq"] == history["fund_queries"][1].seq
    assert records == [
        event.to_record() for event in AuditEvent.objects.filter(seq__in=[r["seq"] for r in records]).order_by("seq")
    ]
    result = verify_chain(records, partial=True)
    assert result.ok, result.message
    assert result.events_checked == len(records)


def test_a_filtered_export_holds_only_matching_events_each_with_a_recomputable_hash(client, olga, bank, history):
    client.force_login(olga)

    lines = exported(client.get("/audit/search/export.jsonl", {"institution": bank.pk, "action": "query."}))

    records = [json.loads(line) for line in lines.splitlines()]
    assert [record["seq"] for record in records] == [history["bank_query"].seq]
    assert all(compute_hash(record) == record["hash"] for record in records)


def test_the_csv_export_has_one_column_per_field_and_the_canonical_details(client, olga, fund, history):
    client.force_login(olga)

    text = exported(client.get("/audit/search/export.csv", {"institution": fund.pk, "action": "query.run"}))

    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["seq"]) for row in rows] == sorted(
        event.seq for event in [*history["fund_queries"], history["fund_denied"]]
    )
    for row in rows:
        recomputed = {**row, "seq": int(row["seq"]), "details": json.loads(row["details"])}
        assert compute_hash(recomputed) == row["hash"]


def test_searches_and_exports_are_recorded(client, olga, fund):
    client.force_login(olga)

    client.get("/audit/search/", {"action": "query."})
    exported(client.get("/audit/search/export.csv", {"outcome": "denied"}))

    reads = AuditEvent.objects.filter(action="audit.read").order_by("seq")
    assert [(event.actor_id, event.details["view"], event.details["filters"]) for event in reads] == [
        (olga.username, "search", {"action": "query."}),
        (olga.username, "export", {"outcome": "denied"}),
    ]


@pytest.mark.parametrize("path", ["/audit/search/", "/audit/search/export.jsonl", "/audit/search/export.csv"])
def test_the_search_and_its_exports_are_for_staff_only(client, alice, mallory, fund, history, path):
    for person in (alice, mallory):
        client.force_login(person)
        response = client.get(path)
        assert response.status_code == 403
        assert b"query.run" not in b"".join(response) if response.streaming else b"query.run" not in response.content
    client.logout()
    assert client.get(path).status_code == 302  # to the sign-in page
    assert not AuditEvent.objects.filter(action="audit.read").exists()


def test_an_unknown_export_format_is_not_found(client, olga):
    client.force_login(olga)
    assert client.get("/audit/search/export.xml").status_code == 404


# --- an institution's own trail ------------------------------------------------------------------


def test_an_owner_reads_her_institutions_trail_and_nothing_else(client, alice, fund, history):
    client.force_login(alice)

    before = list(AuditEvent.objects.all())
    page = client.get(f"/institutions/{fund.pk}/audit/").content.decode()

    for event in before:
        assert (f'id="event-{event.seq}"' in page) == (event.institution == str(fund.pk)), event
    assert (
        history["fund_queries"][0].hash[:12] in page and history["fund_queries"][0].hash in page
    )  # short, and on hover
    read = AuditEvent.objects.filter(action="audit.read").get()
    assert (read.actor_id, read.institution, read.details["view"]) == (alice.username, str(fund.pk), "events")


def test_the_trail_filters_like_the_api(client, alice, fund, history):
    client.force_login(alice)

    page = client.get(f"/institutions/{fund.pk}/audit/", {"outcome": "denied", "dataset": "credit_profiles"})

    text = page.content.decode()
    assert f'id="event-{history["fund_denied"].seq}"' in text
    assert all(f'id="event-{event.seq}"' not in text for event in history["fund_queries"])


def test_the_trail_refuses_an_institution_filter_silently_kept_to_its_own(client, alice, fund, bank, history):
    client.force_login(alice)

    page = client.get(f"/institutions/{fund.pk}/audit/", {"institution": bank.pk}).content.decode()

    assert f'id="event-{history["bank_query"].seq}"' not in page
    assert f'id="event-{history["fund_queries"][0].seq}"' in page


@pytest.mark.parametrize("who", ["bob", "dave", "mallory", "olga"])
def test_analysts_other_institutions_outsiders_and_staff_may_not_read_a_trail(
    client, fund, bank, history, who, request
):
    client.force_login(request.getfixturevalue(who))

    assert client.get(f"/institutions/{fund.pk}/audit/").status_code == 403
    assert client.post(f"/institutions/{fund.pk}/audit/verify/").status_code == 403
    assert not AuditEvent.objects.filter(action="audit.read").exists()


def test_an_owner_verifies_the_chain_and_an_anchor(client, alice, fund, history):
    client.force_login(alice)
    kept = history["fund_queries"][0]

    response = client.post(f"/institutions/{fund.pk}/audit/verify/", {"anchor": f"{kept.seq}:{kept.hash}"}, follow=True)

    text = response.content.decode()
    assert "Chain intact" in text
    assert f"Anchor {kept.seq} is in the chain, unchanged." in text


def test_verifying_an_edited_chain_says_where_it_breaks(client, alice, fund, history, tamper):
    client.force_login(alice)
    edited = history["fund_queries"][1]
    tamper.execute("UPDATE audit_auditevent SET outcome = 'denied' WHERE seq = %s", [edited.seq])

    response = client.post(
        f"/institutions/{fund.pk}/audit/verify/", {"anchor": f"{edited.seq}:{edited.hash}"}, follow=True
    )

    text = response.content.decode()
    assert f"Chain broken at seq {edited.seq} (hash_mismatch)" in text
    assert f"Anchor {edited.seq} does not hold: anchor_mismatch." in text


def test_a_malformed_anchor_is_a_message_not_an_error(client, alice, fund):
    client.force_login(alice)

    response = client.post(f"/institutions/{fund.pk}/audit/verify/", {"anchor": "twelve"}, follow=True)

    assert response.status_code == 200
    assert "Anchor: expected SEQ:HASH" in response.content.decode()


def test_trail_reads_on_the_portal_count_against_the_institutions_limit(client, alice, fund, settings):
    settings.AUDIT_READS_PER_MINUTE = 1
    client.force_login(alice)

    assert client.get(f"/institutions/{fund.pk}/audit/").status_code == 200
    refused = client.get(f"/institutions/{fund.pk}/audit/")

    assert refused.status_code == 429
    assert "reads of the audit trail per minute" in refused.content.decode()


def test_the_trail_picker_opens_the_only_trail_or_lists_several(client, alice, fund, bank, dave):
    client.force_login(alice)
    assert client.get("/audit/").url == f"/institutions/{fund.pk}/audit/"

    from institutions.models import Member, Role

    Member.objects.create(user=alice, institution=bank, role=Role.ADMIN)
    page = client.get("/audit/").content.decode()
    assert f"/institutions/{fund.pk}/audit/" in page and f"/institutions/{bank.pk}/audit/" in page


def test_events_whose_institution_is_a_free_label_are_shown_under_it(client, olga, make_chain):
    make_chain(2)
    record("query.run", institution="9" * 40)
    client.force_login(olga)

    page = client.get("/audit/search/").content.decode()

    assert "inst-1" in page and "inst-0" in page and "9" * 40 in page
