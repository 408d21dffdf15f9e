"""The one metered-use helper every read path goes through: grant, charge, audit, and each refusal on record."""

from __future__ import annotations

import pytest
from catalog_support import approved

import access.metered
from access.metered import MeteredUse
from audit.actors import by_system
from audit.models import AuditEvent
from datasets.spec import Mode
from quotas.service import Window, get_backend, peek
from vitamin.refusals import Refusal


def use_of(institution, dataset) -> MeteredUse:
    return MeteredUse(
        institution, [dataset], Mode.QUERY, action="test.use", actor=by_system(institution.pk), target="dataset:x"
    )


def recorded(outcome: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="test.use", outcome=outcome))


@pytest.fixture(params=["database", "redis"])
def backend(request, settings):
    if request.param == "redis":
        settings.QUOTA_BACKEND = "redis"
        settings.REDIS_URL = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_client")
    get_backend.cache_clear()
    yield request.param
    get_backend.cache_clear()


def test_a_use_is_charged_and_recorded_once(fund, demo_datasets, plan, backend):
    approved(fund, demo_datasets.industry, plan, ["query"])
    (grant,) = use_of(fund, demo_datasets.industry).commit({"queries": 3}, {"why": "test"})
    assert peek(grant.quota_subject, "queries", Window.DAY) == 3
    (event,) = recorded("success")
    assert event.details == {"why": "test"} and event.institution == str(fund.pk)


def test_a_denied_grant_is_recorded_as_the_use_and_nothing_is_charged(fund, demo_datasets):
    with pytest.raises(Refusal) as refused:
        use_of(fund, demo_datasets.industry).commit({"queries": 1}, {})
    assert refused.value.code == "not_subscribed"
    (event,) = recorded("denied")
    assert event.details["code"] == "not_subscribed"
    assert AuditEvent.objects.filter(action="grant.denied").count() == 1
    assert not recorded("success")


def test_a_quota_refusal_and_a_callers_check_are_recorded_and_charge_nothing(fund, demo_datasets, plan, backend):
    approved(fund, demo_datasets.industry, plan, ["query"])
    use = use_of(fund, demo_datasets.industry)
    with pytest.raises(Refusal):
        use.commit({"queries": plan.queries_per_day + 1}, {})

    def no_thanks():
        raise Refusal("Not this part.", code="part_refused")

    with pytest.raises(Refusal):
        use.commit({"queries": 1}, {}, check=no_thanks)
    assert sorted(event.details["code"] for event in recorded("denied")) == ["part_refused", "quota_exceeded"]
    assert peek(use.grants()[0].quota_subject, "queries", Window.DAY) == 0
    assert not recorded("success")


def test_a_use_that_cannot_be_recorded_is_refused_and_its_charge_given_back(
    fund, demo_datasets, plan, backend, monkeypatch
):
    approved(fund, demo_datasets.industry, plan, ["query"])

    def broken(action, **kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(access.metered, "record", broken)
    use = use_of(fund, demo_datasets.industry)
    with pytest.raises(Refusal) as refused:
        use.commit({"queries": 2}, {})
    assert refused.value.code == "audit_unavailable" and refused.value.kind.ours
    assert peek(use.grants()[0].quota_subject, "queries", Window.DAY) == 0  # Redis too: given back, not rolled back


def test_an_audit_write_the_database_refuses_is_contained_and_the_use_refused(
    fund, demo_datasets, plan, backend, monkeypatch
):
    """A real database error in the audit insert (a hash already in the chain) rolls back only the
    audit's own savepoint: the refund still runs in the same transaction, on PostgreSQL too."""
    approved(fund, demo_datasets.industry, plan, ["query"])
    use = use_of(fund, demo_datasets.industry)
    use.commit({"queries": 1}, {})
    taken = AuditEvent.objects.order_by("-seq").values_list("hash", flat=True).first()
    monkeypatch.setattr("audit.service.compute_hash", lambda record: taken)

    with pytest.raises(Refusal) as refused:
        use_of(fund, demo_datasets.industry).commit({"queries": 2}, {})
    assert refused.value.code == "audit_unavailable"
    assert peek(use.grants()[0].quota_subject, "queries", Window.DAY) == 1  # the first use's only
    assert len(recorded("success")) == 1
