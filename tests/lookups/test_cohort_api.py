"""Cohort assessments: aggregate features of consented customers per group, with the k rule on matched customers
and no trace of a group below k, checked against the source values and by trying to break the rule."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict

import pytest
from catalog_support import auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lookup_support import item
from lookups.models import LookupConsent, LookupRequest

from access import subscriptions
from audit.models import AuditEvent

URL = "/api/v1/datasets/credit_profiles/cohorts"
K = 5  # credit_profiles' spec
_EXAMPLES = itertools.count()  # transaction ids unique across Hypothesis examples (they share one database)


def cohort(client, token, items, transaction_id="c-1", **extra):
    body = {"transaction_id": transaction_id, "items": items, **extra}
    response = client.post(URL, data=json.dumps(body), content_type="application/json", **auth(token))
    return response, response.json()


def test_groups_carry_the_source_values_of_their_matched_customers(client, bank_lookup, members, strangers):
    chosen = members[:200]
    items = [item(person) for person in chosen] + [item(person) for person in strangers[:10]]
    response, body = cohort(
        client, bank_lookup.token, items, group_by=["income_band"], measures=["credit_score"],
        cutoff={"field": "credit_score", "cutoff": 650},
    )  # fmt: skip
    assert response.status_code == 200, body
    by_band = defaultdict(list)
    for person in chosen:
        by_band[person.income_band].append(person.credit_score)
    released = {group["group"]["income_band"]: group for group in body["groups"]}
    assert released, "some groups are large enough"
    for band, scores in by_band.items():
        if len(scores) < K:
            assert band not in released
            continue
        group = released[band]
        assert group["customers"] == len(scores)
        assert group["measures"]["credit_score"]["mean"] == pytest.approx(statistics.fmean(scores))
        assert group["measures"]["credit_score"]["median"] == pytest.approx(statistics.median(scores))
        assert group["share_at_or_above"] == pytest.approx(sum(s >= 650 for s in scores) / len(scores))
    assert body["items"] == 210 and body["k"] == K
    assert "matched" not in body and "not_found" not in body, "no total from which a small group's size follows"


def test_a_customer_named_twice_counts_once_for_k(client, bank_lookup, members):
    four = members[:4]
    items = [item(person) for person in four] * 3  # twelve items, four customers
    response, body = cohort(client, bank_lookup.token, items)
    assert response.status_code == 200 and body["groups"] == []
    five = [item(person) for person in members[:5]]
    response, body = cohort(client, bank_lookup.token, five, "c-2")
    assert [group["customers"] for group in body["groups"]] == [5]


def test_bands_of_a_measure_group_customers(client, bank_lookup, members):
    items = [item(person) for person in members[:300]]
    response, body = cohort(client, bank_lookup.token, items, group_by=[{"band": "credit_score", "width": 100}])
    assert response.status_code == 200
    labels = [group["group"]["credit_score_band"] for group in body["groups"]]
    assert labels and all(label.startswith("[") and label.endswith(")") for label in labels)
    for group in body["groups"]:
        low, high = (int(x) for x in group["group"]["credit_score_band"][1:-1].split(","))
        stats = group["measures"]["credit_score"]
        assert low <= stats["p25"] <= stats["median"] <= stats["p75"] < high


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_group_below_k_leaves_no_trace(client, bank_lookup, members, strangers, data):
    """Two cohorts that differ only in customers of groups below k get the same answer (the transaction id aside)."""
    pool = members[:120]
    base = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=60, unique_by=lambda p: p.index))
    by_group = defaultdict(set)
    for person in base:
        by_group[person.income_band].add(person.index)
    small = [band for band, indexes in by_group.items() if len(indexes) < K - 1]
    extra_pool = [p for p in pool if p.income_band in small and p.index not in by_group[p.income_band]]
    extra = (
        data.draw(st.lists(st.sampled_from(extra_pool), max_size=3, unique_by=lambda p: p.index)) if extra_pool else []
    )
    # Adding strangers, refused items, and customers to groups that stay below k changes nothing visible.
    for person in extra:
        if len(by_group[person.income_band]) + 1 >= K:
            continue
        by_group[person.income_band].add(person.index)
    added = [p for p in extra if p.index in by_group[p.income_band]]
    grouped = {"group_by": ["income_band"], "measures": ["credit_score", "on_time_ratio"]}
    one = next(_EXAMPLES)
    first, a = cohort(client, bank_lookup.token, [item(p) for p in base], f"a-{one}", **grouped)
    more = [item(p) for p in base + added] + [item(s) for s in strangers[:2]] + [item(base[0], consent=None)]
    second, b = cohort(client, bank_lookup.token, more, f"b-{one}", **grouped)
    assert first.status_code == second.status_code == 200
    assert a["groups"] == b["groups"]
    assert all(group["customers"] >= K for group in a["groups"])


def test_threshold_only_subscriptions_and_unknown_groupings_are_refused(client, bank_lookup, members):
    items = [item(person) for person in members[:10]]
    response, body = cohort(client, bank_lookup.token, items, group_by=["customer"])
    assert response.status_code == 400 and body["error"]["code"] == "unknown_field"
    response, body = cohort(client, bank_lookup.token, items, group_by=[{"band": "income_band", "width": 10}])
    assert response.status_code == 400 and body["error"]["code"] == "unknown_field", "bands of numeric measures only"
    response, body = cohort(client, bank_lookup.token, items, group_by=[{"band": "credit_score", "width": 0}])
    assert response.status_code == 400 and body["error"]["code"] == "invalid_request"
    subscriptions.set_lookup_terms(bank_lookup.subscription, fields=[], threshold_only=True)
    response, body = cohort(client, bank_lookup.token, items)
    assert response.status_code == 403 and body["error"]["code"] == "threshold_only"


def test_the_list_is_not_kept_only_its_size_and_a_keyed_hash_are_audited(client, bank_lookup, members):
    items = [item(person) for person in members[:20]]
    response, body = cohort(client, bank_lookup.token, items, group_by=["gender"])
    assert response.status_code == 200
    assert not LookupConsent.objects.exists()
    kept = LookupRequest.objects.get(transaction_id="c-1")
    assert kept.kind == "cohort" and kept.items == 20
    event = AuditEvent.objects.get(action="lookup.cohort")
    assert event.details["items"] == 20 and len(event.details["list_sha256"]) == 64
    assert set(event.details) == {"dataset", "version", "transaction_id", "items", "list_sha256", "group_by",
                                  "measures", "groups"}  # fmt: skip
    again, replayed = cohort(client, bank_lookup.token, items, group_by=["gender"])
    assert again.content == response.content and again["X-Vitamin-Replayed"] == "true"


def test_cohort_customers_are_metered_on_their_own_daily_limit(client, bank_lookup, members):
    plan = bank_lookup.subscription.plan
    plan.cohort_customers_per_day = 30
    plan.save()
    response, _ = cohort(client, bank_lookup.token, [item(p) for p in members[:25]])
    assert response.status_code == 200
    response, body = cohort(client, bank_lookup.token, [item(p) for p in members[:10]], "c-2")
    assert response.status_code == 429 and body["error"]["details"]["metric"] == "cohort_customers"
