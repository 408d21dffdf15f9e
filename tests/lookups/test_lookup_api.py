"""The lookup API through Django's test client, against a real built credit_profiles version: matching by every
identifier form, the same shape for members and strangers, threshold answers and the cut-off limit, replays,
consents, quotas, grants, and no raw identifier kept anywhere."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re

import pytest
from catalog_support import approved, auth, bearer_token
from django.apps import apps
from django.core import serializers
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from lookup_support import consent, item
from lookups.models import CutoffCheck, LookupConsent, LookupRequest
from lookups.replays import erase_expired

from access import subscriptions
from audit.models import AuditEvent
from datasets.identifiers import digest
from quotas.service import Window, peek
from vitamin.refusals import Refusal

URL = "/api/v1/datasets/credit_profiles/lookup"


def post(client, token, body, url=URL):
    return client.post(url, data=json.dumps(body), content_type="application/json", **auth(token))


def lookup(client, token, items, transaction_id="tx-1", **extra):
    response = post(client, token, {"transaction_id": transaction_id, "items": items, **extra})
    return response, (response.json() if response["Content-Type"].startswith("application/json") else None)


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["resident_id", "mobile", "resident_id_sha256", "mobile_sha256"])
def test_each_identifier_form_finds_the_customer_with_the_source_values(client, bank_lookup, members, form):
    chosen = members[:5]
    response, body = lookup(client, bank_lookup.token, [item(person, form=form) for person in chosen])
    assert response.status_code == 200, body
    assert response["X-Vitamin-Replayed"] == "false"
    assert [result["status"] for result in body["results"]] == ["matched"] * 5
    for person, result in zip(chosen, body["results"], strict=True):
        assert result["reference"] == f"ref-{person.index}"
        assert result["fields"]["credit_score"] == person.credit_score
        assert result["fields"]["income_band"] == person.income_band
        assert "customer" not in result["fields"] and "mobile" not in result["fields"], "never a pseudonym"
    assert body["matched"] == 5 and body["not_found"] == 0 and body["version"] == 1


def test_identifiers_are_normalized_as_documented(client, bank_lookup, members):
    person = members[0]
    rid, phone = person.resident_id, person.mobile
    spaced = f"{rid[:6]} {rid[6:14]}-{rid[14:]}".lower()
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in rid)
    items = [
        item(person, id=spaced, reference="spaced"),
        item(person, id=full_width, reference="full-width"),
        item(person, form="mobile", id=f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}", reference="plus86"),
        item(person, form="mobile", id=f"0086{phone}", reference="0086"),
        item(person, form="resident_id_sha256", id_sha256=digest(rid).upper(), reference="upper-hex"),
    ]
    response, body = lookup(client, bank_lookup.token, items)
    assert response.status_code == 200
    assert {result["status"] for result in body["results"]} == {"matched"}
    assert {result["fields"]["credit_score"] for result in body["results"]} == {person.credit_score}


def test_members_and_strangers_are_answered_in_the_same_shape(client, bank_lookup, members, strangers):
    items = [item(members[0]), item(strangers[0]), item(members[1], form="mobile"), item(strangers[1], form="mobile")]
    response, body = lookup(client, bank_lookup.token, items)
    assert response.status_code == 200
    statuses = [result["status"] for result in body["results"]]
    assert statuses == ["matched", "not_found", "matched", "not_found"]
    assert len({tuple(result) for result in body["results"]}) == 1, "every item has the same keys"
    assert all(result["fields"] is None for result in body["results"] if result["status"] == "not_found")
    assert all(result["refusal"] is None for result in body["results"])


def test_a_batch_of_strangers_only_is_an_ordinary_answer(client, bank_lookup, strangers):
    response, body = lookup(client, bank_lookup.token, [item(person) for person in strangers[:3]])
    assert response.status_code == 200
    assert body["not_found"] == 3 and body["matched"] == 0


def test_invalid_identifiers_are_refused_per_item_without_echoing_them(client, bank_lookup, members):
    bad_check = members[0].resident_id[:17] + ("0" if members[0].resident_id[17] != "0" else "1")
    items = [
        item(members[0], id=bad_check, reference="bad-check"),
        item(members[0], form="mobile", id="12345", reference="short-mobile"),
        item(members[0], form="resident_id_sha256", id_sha256="abc", reference="short-digest"),
        item(members[1]),
    ]
    response, body = lookup(client, bank_lookup.token, items)
    assert response.status_code == 200
    codes = [result["refusal"] and result["refusal"]["code"] for result in body["results"]]
    assert codes == ["invalid_identifier"] * 3 + [None]
    assert bad_check not in response.content.decode()


# --- consent ---------------------------------------------------------------------------------


def test_consent_is_required_current_and_in_scope_per_item(client, bank_lookup, members, strangers):
    items = [
        item(members[0], reference="no-consent", consent=None),
        item(members[1], reference="expired", consent=consent("C-old", days=-1)),
        item(members[2], reference="other-purpose", consent=consent("C-mkt", scope="marketing")),
        item(members[3], reference="incomplete", consent={"reference": "C-x"}),
        item(strangers[0], reference="stranger-expired", consent=consent("C-old2", days=-1)),
        item(members[4], reference="ok", consent=consent("C-ok", scope=["marketing", "credit_assessment"])),
    ]
    response, body = lookup(client, bank_lookup.token, items)
    assert response.status_code == 200
    codes = {result["reference"]: result["refusal"] and result["refusal"]["code"] for result in body["results"]}
    assert codes == {
        "no-consent": "consent_missing",
        "expired": "consent_expired",
        "other-purpose": "consent_scope",
        "incomplete": "consent_missing",
        "stranger-expired": "consent_expired",
        "ok": None,
    }
    refused = [result for result in body["results"] if result["status"] == "refused"]
    assert all(result["fields"] is None for result in refused), "a refused member shows nothing"
    kept = LookupRequest.objects.get(transaction_id="tx-1")
    consents = {c.item_reference: c for c in LookupConsent.objects.filter(request=kept)}
    assert consents["expired"].consent_reference == "C-old" and consents["expired"].outcome == "consent_expired"
    assert consents["ok"].consent_scope == "marketing credit_assessment" and consents["ok"].outcome == "matched"
    assert consents["ok"].consent_expires_at is not None


def test_a_malformed_request_is_refused_whole_naming_the_place(client, bank_lookup, members):
    good = item(members[0])
    cases = [
        ({"items": [good]}, "transaction_id"),
        ({"transaction_id": "t", "items": []}, "items"),
        ({"transaction_id": "t", "items": [{**good, "id_type": "passport"}]}, "items[0].id_type"),
        ({"transaction_id": "t", "items": [{**good, "id_sha256": digest("x")}]}, "items[0]"),
        ({"transaction_id": "t", "items": [good, {**good, "consent": {**good["consent"], "expires_at": "soon"}}]},
         "items[1].consent.expires_at"),
        ({"transaction_id": "t", "items": [good], "threshold": {"field": "credit_score", "cutoff": "600"}},
         "threshold.cutoff"),
        ({"transaction_id": "t", "items": [good], "surprise": 1}, "body"),
        ({"transaction_id": "bad id with spaces", "items": [good]}, "transaction_id"),
    ]  # fmt: skip
    for body, where in cases:
        response = post(client, bank_lookup.token, body)
        assert response.status_code == 400, (where, response.content)
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["message"].startswith(where), error
        assert members[0].resident_id not in response.content.decode()
    assert not LookupRequest.objects.exists()


def test_a_batch_larger_than_the_limit_is_refused_whole(client, bank_lookup, members, settings):
    settings.LOOKUP_MAX_ITEMS = 3
    response, body = lookup(client, bank_lookup.token, [item(person) for person in members[:4]])
    assert response.status_code == 413 and body["error"]["code"] == "batch_too_large"


# --- threshold-only answers ------------------------------------------------------------------


def test_threshold_answers_are_only_y_n_or_na(client, bank_lookup, members, strangers):
    person = members[0]
    cutoff = person.credit_score  # at the value: Y; one above: N
    items = [item(person, reference="at"), item(strangers[0], reference="stranger")]
    threshold = {"field": "credit_score", "cutoff": cutoff}
    response, body = lookup(client, bank_lookup.token, items, threshold=threshold)
    assert response.status_code == 200
    assert [r["answer"] for r in body["results"]] == ["Y", "N/A"]
    assert all("fields" not in r for r in body["results"]) and body["fields"] is None
    _, above = lookup(client, bank_lookup.token, [item(person)], "tx-2", threshold={**threshold, "cutoff": cutoff + 1})
    assert above["results"][0]["answer"] == "N"
    text = json.dumps(body)
    assert f":{person.credit_score}," not in text.replace(f'"cutoff":{float(cutoff)}', ""), "never the value"


def test_changing_the_cutoff_for_one_customer_is_limited_per_day_members_and_strangers_alike(
    client, bank_lookup, members, strangers, settings
):
    settings.LOOKUP_MAX_CUTOFFS_PER_DAY = 2
    member, stranger = members[0], strangers[0]
    answers = []
    for number, cutoff in enumerate([600, 650, 600, 625, 650], start=1):
        items = [item(member, reference="member"), item(stranger, reference="stranger")]
        response, body = lookup(
            client, bank_lookup.token, items, f"tx-{number}", threshold={"field": "credit_score", "cutoff": cutoff}
        )
        assert response.status_code == 200
        answers.append([(r["status"], r["refusal"] and r["refusal"]["code"]) for r in body["results"]])
    # 600 and 650 are the day's two cut-offs: both may be repeated; 625 is a third, refused for both alike.
    assert answers[3] == [("refused", "cutoff_limit"), ("refused", "cutoff_limit")]
    for index in (0, 1, 2, 4):
        assert answers[index][0][1] is None and answers[index][1] == ("not_found", None)
    # Another customer is not limited by this one's cut-offs.
    _, body = lookup(
        client, bank_lookup.token, [item(members[1])], "tx-9", threshold={"field": "credit_score", "cutoff": 625}
    )
    assert body["results"][0]["refusal"] is None
    assert CutoffCheck.objects.count() == 5  # member x2, stranger x2, members[1] x1
    assert not any(c.subject in (member.resident_id, digest(member.resident_id)) for c in CutoffCheck.objects.all())


def test_threshold_only_subscription_answers_only_thresholds(client, bank_lookup, members):
    subscriptions.set_lookup_terms(bank_lookup.subscription, fields=[], threshold_only=True)
    response, body = lookup(client, bank_lookup.token, [item(members[0])])
    assert response.status_code == 403 and body["error"]["code"] == "threshold_only"
    denied = AuditEvent.objects.get(action="lookup.batch")
    assert denied.outcome == "denied" and denied.details["code"] == "threshold_only"
    response, body = lookup(
        client, bank_lookup.token, [item(members[0])], threshold={"field": "credit_score", "cutoff": 500}
    )
    assert response.status_code == 200 and body["results"][0]["answer"] in ("Y", "N")


def test_a_subscription_narrowed_to_some_fields_returns_only_those(client, bank_lookup, members):
    subscriptions.set_lookup_terms(bank_lookup.subscription, fields=["credit_score"], threshold_only=False)
    response, body = lookup(client, bank_lookup.token, [item(members[0])])
    assert response.status_code == 200 and set(body["results"][0]["fields"]) == {"credit_score"}
    response, body = lookup(client, bank_lookup.token, [item(members[0])], "tx-2", fields=["income_band"])
    assert response.status_code == 403 and body["error"]["code"] == "field_not_granted"
    response, body = lookup(client, bank_lookup.token, [item(members[0])], "tx-3", fields=["customer"])
    assert response.status_code == 400 and body["error"]["code"] == "unknown_field", "a pseudonym is never a field"
    response, body = lookup(
        client, bank_lookup.token, [item(members[0])], "tx-4", threshold={"field": "loans_count", "cutoff": 1}
    )
    assert response.status_code == 400 and body["error"]["code"] == "unknown_field", "not a threshold field"


# --- replays ---------------------------------------------------------------------------------


def test_a_replayed_transaction_id_returns_the_first_answer_byte_for_byte_and_charges_nothing(
    client, bank_lookup, members
):
    body = {"transaction_id": "tx-replay", "items": [item(person) for person in members[:3]]}
    first = post(client, bank_lookup.token, body)

    def used():
        return peek(bank_lookup.subscription.quota_subject, "lookups", Window.DAY)

    assert first.status_code == 200 and used() == 3
    again = post(client, bank_lookup.token, body)
    assert again.status_code == 200 and again["X-Vitamin-Replayed"] == "true"
    assert again.content == first.content
    assert used() == 3
    assert AuditEvent.objects.filter(action="lookup.replay").count() == 1
    # The same id for another request is a conflict; the kept answer is encrypted.
    changed = post(client, bank_lookup.token, {**body, "items": body["items"][:2]})
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "transaction_id_reused"
    kept = LookupRequest.objects.get(transaction_id="tx-replay")
    assert b"credit_score" not in bytes(kept.answer)


def test_a_replay_after_the_window_is_refused_and_the_answer_erased(client, bank_lookup, members):
    body = {"transaction_id": "tx-old", "items": [item(members[0])]}
    assert post(client, bank_lookup.token, body).status_code == 200
    LookupRequest.objects.update(replay_until=timezone.now())
    assert erase_expired() == 1
    response = post(client, bank_lookup.token, body)
    assert response.status_code == 409 and response.json()["error"]["code"] == "transaction_id_expired"


def test_a_revoked_grant_refuses_the_next_batch_and_replays(client, bank_lookup, members, olga):
    body = {"transaction_id": "tx-a", "items": [item(members[0])]}
    assert post(client, bank_lookup.token, body).status_code == 200
    subscriptions.revoke(bank_lookup.subscription, by=olga, reason="Ended.")
    for request in (body, {**body, "transaction_id": "tx-b"}):
        response = post(client, bank_lookup.token, request)
        assert response.status_code == 403 and response.json()["error"]["code"] == "subscription_revoked"


# --- quota, scope, grant ----------------------------------------------------------------------


def test_a_batch_over_the_daily_lookups_is_refused_whole(client, bank_lookup, members):
    plan = bank_lookup.subscription.plan
    plan.lookups_per_day = 5
    plan.save()
    response, body = lookup(client, bank_lookup.token, [item(person) for person in members[:6]])
    assert response.status_code == 429 and body["error"]["code"] == "quota_exceeded"
    assert response["Retry-After"]
    assert not LookupRequest.objects.exists() and not LookupConsent.objects.exists()
    denied = AuditEvent.objects.get(action="lookup.batch")
    assert denied.outcome == "denied" and denied.details["code"] == "quota_exceeded"
    assert lookup(client, bank_lookup.token, [item(p) for p in members[:5]], "tx-2")[0].status_code == 200
    assert lookup(client, bank_lookup.token, [item(members[5])], "tx-3")[0].status_code == 429


def test_the_lookup_scope_and_the_lookup_grant_are_both_required(client, bank, plan, credit, demo_datasets, members):
    token = bearer_token(bank, scopes="query catalog:read")
    response, body = lookup(client, token, [item(members[0])])
    assert response.status_code == 403 and body["error"]["code"] == "insufficient_scope"
    token = bearer_token(bank, scopes="lookup")
    response, body = lookup(client, token, [item(members[0])])
    assert response.status_code == 403 and body["error"]["code"] == "not_subscribed"
    approved(bank, demo_datasets.cards, plan, ["query"])
    response = post(client, token, {"transaction_id": "t", "items": [item(members[0])]},
                    url="/api/v1/datasets/card_transactions/lookup")  # fmt: skip
    assert response.status_code == 403 and response.json()["error"]["code"] == "mode_not_granted"
    response = post(client, token, {"transaction_id": "t", "items": [item(members[0])]},
                    url="/api/v1/datasets/nothing_here/lookup")  # fmt: skip
    assert response.status_code == 404


# --- the record -------------------------------------------------------------------------------


def test_each_batch_is_audited_with_counts_and_consent_hashes(client, bank_lookup, members, strangers):
    items = [item(members[0]), item(strangers[0]), item(members[1], consent=None)]
    response, _ = lookup(client, bank_lookup.token, items, "tx-audit")
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="lookup.batch")
    assert event.outcome == "success" and event.target == "dataset:credit_profiles"
    assert event.institution == str(bank_lookup.institution.pk) and event.actor_type == "client"
    details = event.details
    assert (details["items"], details["matched"], details["not_found"], details["refused"]) == (3, 1, 1, 1)
    assert details["transaction_id"] == "tx-audit" and details["version"] == 1
    assert details["consent_hashes"] == [
        hashlib.sha256(f"C-{person.index}".encode()).hexdigest() for person in (members[0], strangers[0])
    ]


def test_no_raw_identifier_is_kept_in_the_database_or_the_logs(client, bank_lookup, members, strangers, caplog):
    caplog.set_level(logging.DEBUG)
    chosen = [members[0], members[1], strangers[0]]
    forms = ["resident_id", "mobile", "resident_id_sha256", "mobile_sha256"]
    items = [item(person, form=form, reference=f"{person.index}-{form}") for person in chosen for form in forms]
    lookup(client, bank_lookup.token, items, "tx-raw")
    lookup(client, bank_lookup.token, items[:4], "tx-raw-2", threshold={"field": "credit_score", "cutoff": 600})
    cohort = {"transaction_id": "tx-raw-3", "items": items, "group_by": ["gender"]}
    post(client, bank_lookup.token, cohort, url="/api/v1/datasets/credit_profiles/cohorts")
    secrets_sent = set()
    for person in chosen:
        secrets_sent |= {person.resident_id, person.mobile, digest(person.resident_id), digest(person.mobile)}
    everything = "".join(serializers.serialize("json", model.objects.all()) for model in apps.get_models()) + "\n".join(
        record.getMessage() for record in caplog.records
    )
    assert LookupRequest.objects.count() == 3
    for secret in secrets_sent:
        assert secret not in everything


def test_lookup_terms_are_changed_through_the_subscription_record(client, bank_lookup, members, olga, admin_client):
    with pytest.raises(Refusal) as refused:
        subscriptions.set_lookup_terms(bank_lookup.subscription, fields=["customer"], threshold_only=False)
    assert refused.value.code == "invalid_request"
    url = f"/admin/access/subscription/{bank_lookup.subscription.pk}/change/"
    response = admin_client.post(
        url,
        {
            "limit_overrides": "{}",
            "lookup_fields": '["credit_score"]',
            "lookup_threshold_only": "on",
            "changes-TOTAL_FORMS": "0",
            "changes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, re.findall(r'class="errorlist[^>]*>.*?</ul>', response.content.decode(), re.S)
    change = bank_lookup.subscription.changes.get(action="change_lookup_terms")
    assert change.details["to"] == {"fields": ["credit_score"], "threshold_only": True}
    response, body = lookup(client, bank_lookup.token, [item(members[0])])
    assert response.status_code == 403 and body["error"]["code"] == "threshold_only", "effective at once"


# --- membership cannot be probed -------------------------------------------------------------

_TRANSACTIONS = itertools.count()
CONSENT_STATES = {
    "ok": lambda ref: consent(ref),
    "missing": lambda ref: None,
    "expired": lambda ref: consent(ref, days=-0.01),
    "scope": lambda ref: consent(ref, scope="marketing"),
}
EXPECTED_REFUSAL = {"ok": None, "missing": "consent_missing", "expired": "consent_expired", "scope": "consent_scope"}


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_request_tells_a_member_from_a_stranger_except_the_status_of_an_answered_item(
    client, bank_lookup, members, strangers, data
):
    """Whatever mix of members, strangers, identifier forms, consents and answer kinds: every item has the same
    keys, every refusal follows from what was sent alone, and only an answered item's status differs."""
    type(bank_lookup.subscription.plan).objects.filter(pk=bank_lookup.subscription.plan_id).update(
        lookups_per_day=10**6
    )
    rows = data.draw(
        st.lists(
            st.tuples(
                st.booleans(),  # a member?
                st.integers(0, 40),
                st.sampled_from(["resident_id", "mobile", "resident_id_sha256", "mobile_sha256"]),
                st.sampled_from(list(CONSENT_STATES)),
                st.booleans(),  # a valid identifier?
            ),
            min_size=1,
            max_size=12,
        )
    )
    threshold = data.draw(st.sampled_from([None, {"field": "credit_score", "cutoff": 600}]))
    items = []
    for member, index, form, state, valid in rows:
        person = (members if member else strangers)[index]
        entry = item(person, form=form, consent=CONSENT_STATES[state](f"C-{index}"))
        if not valid:
            entry.update({"id_sha256": "0" * 63} if "id_sha256" in entry else {"id": entry["id"][:-2]})
        items.append(entry)
    extra = {"threshold": threshold} if threshold else {}
    response, body = lookup(client, bank_lookup.token, items, f"p-{next(_TRANSACTIONS)}", **extra)
    assert response.status_code == 200, body
    assert len({tuple(result) for result in body["results"]}) == 1
    for (member, _, _, state, valid), result in zip(rows, body["results"], strict=True):
        expected = EXPECTED_REFUSAL[state] or (None if valid else "invalid_identifier")
        assert (result["refusal"] or {}).get("code") == expected
        if expected is None:
            assert result["status"] == ("matched" if member else "not_found")
        else:
            assert result["status"] == "refused"
        if threshold:
            assert result["answer"] in (("Y", "N") if result["status"] == "matched" else ("N/A",))
        else:
            assert (result["fields"] is not None) == (result["status"] == "matched")


def test_a_version_whose_files_are_gone_is_unavailable_not_a_server_error(
    client, bank_lookup, members, tmp_path, settings
):
    settings.STORE_URL = str(tmp_path / "empty-store")
    response, body = lookup(client, bank_lookup.token, [item(members[0])])
    assert response.status_code == 503 and body["error"]["code"] == "dataset_unavailable"
    assert not LookupRequest.objects.exists()


def test_a_nul_or_deep_nesting_anywhere_in_a_large_body_is_refused(client, bank_lookup, members):
    items = [item(person) for person in members[:300]]
    with_nul = [*items[:-1], {**items[-1], "reference": "end\x00"}]
    response, body = lookup(client, bank_lookup.token, with_nul)
    assert response.status_code == 400 and body["error"]["code"] == "malformed_request"
    nested: object = "x"
    for _ in range(40):
        nested = [nested]
    deep = [*items[:-1], {**items[-1], "reference": nested}]
    response, body = lookup(client, bank_lookup.token, deep)
    assert response.status_code == 400 and body["error"]["code"] == "malformed_request"
    assert not LookupRequest.objects.exists()


def test_naming_a_customer_by_another_identifier_does_not_reset_the_cutoff_limit(
    client, bank_lookup, members, settings
):
    settings.LOOKUP_MAX_CUTOFFS_PER_DAY = 2
    member = members[0]
    forms = ["resident_id", "mobile", "mobile_sha256", "resident_id_sha256"]
    codes = []
    for number, (form, cutoff) in enumerate(zip(forms, [600, 650, 625, 612], strict=True)):
        threshold = {"field": "credit_score", "cutoff": cutoff}
        _, body = lookup(client, bank_lookup.token, [item(member, form=form)], f"tx-{number}", threshold=threshold)
        result = body["results"][0]
        codes.append((result["refusal"] or {}).get("code"))
        assert result["answer"] == ("N/A" if result["refusal"] else result["answer"])
    assert codes == [None, None, "cutoff_limit", "cutoff_limit"]
