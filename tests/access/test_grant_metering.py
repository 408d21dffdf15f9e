"""Charging a grant's usage through the quota service: 429s with rate-limit headers, slots, the usage report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from catalog_support import approved
from django.utils import timezone

from access import metering, service, subscriptions
from access.usage import usage_report
from quotas.models import UsageDaily
from quotas.windows import usage_day
from vitamin.errors import refusal_headers, status_of
from vitamin.refusals import Refusal


@pytest.fixture
def grant(fund, demo_datasets, plan):
    approved(fund, demo_datasets.industry, plan, ["query"])
    return service.ensure(fund, demo_datasets.industry, "query")


def test_charges_count_against_the_daily_limit_and_then_answer_429(grant):
    decision = metering.charge(grant, "queries", 60)
    assert (decision.used, decision.remaining) == (60, 40)
    with pytest.raises(Refusal) as refused:
        metering.charge(grant, "queries", 41)
    error = refused.value
    assert (status_of(error), error.code) == (429, "quota_exceeded")
    assert error.details["metric"] == "queries" and error.details["remaining"] == 40
    assert refusal_headers(error)["RateLimit-Limit"] == "100" and refusal_headers(error)["RateLimit-Remaining"] == "40"
    assert int(refusal_headers(error)["Retry-After"]) >= 1
    assert metering.charge(grant, "queries", 40).remaining == 0, "the denied charge took nothing"


def test_overrides_change_the_limit_on_the_next_charge(fund, demo_datasets, grant):
    metering.charge(grant, "lookups", 50)
    with pytest.raises(Refusal):
        metering.charge(grant, "lookups", 1)
    subscriptions.set_limit_overrides(grant.subscription, {"lookups_per_day": 60})
    fresh = service.ensure(fund, demo_datasets.industry, "query")
    assert metering.charge(fresh, "lookups", 10).remaining == 0


def test_refunds_give_back_work_that_did_not_happen(grant):
    now = timezone.now()
    metering.charge(grant, "rows_returned", 900, now=now)
    assert metering.refund(grant, "rows_returned", 400, now=now) == 400
    assert metering.charge(grant, "rows_returned", 500, now=now).remaining == 0


def test_each_subscription_has_its_own_counters(fund, demo_datasets, plan, grant):
    approved(fund, demo_datasets.cards, plan, ["query"])
    other = service.ensure(fund, demo_datasets.cards, "query")
    metering.charge(grant, "queries", 100)
    assert metering.charge(other, "queries", 100).allowed


def test_concurrent_query_slots(grant):
    with metering.query_slot(grant):
        with pytest.raises(Refusal) as refused:
            with metering.query_slot(grant):
                pass
        assert status_of(refused.value) == 429 and refused.value.details["metric"] == "concurrent_queries"
        assert "Retry-After" in refusal_headers(refused.value)
    with metering.query_slot(grant):  # released: free again
        pass


def test_a_charge_refused_inside_a_slot_is_not_mistaken_for_the_slot(grant):
    with pytest.raises(Refusal) as refused:
        with metering.query_slot(grant):
            metering.charge(grant, "queries", 1000)
    assert refused.value.details["metric"] == "queries"
    with metering.query_slot(grant):
        pass


def test_usage_report_against_limits(fund, demo_datasets, plan, grant):
    now = timezone.now()
    today = usage_day(now)
    metering.charge(grant, "queries", 3, now=now)
    metering.charge(grant, "rows_returned", 250, now=now - timedelta(days=1))
    report = usage_report([grant.subscription], today - timedelta(days=1), today, now=now)
    (entry,) = report
    assert entry["dataset"] == "industry_prosperity_monthly" and entry["plan"] == "standard"
    yesterday, current = entry["days"]
    assert yesterday["metrics"]["rows_returned"] == {"used": 250, "limit": 1000}
    assert current["metrics"]["queries"] == {"used": 3, "limit": 100}
    assert current["metrics"]["lookups"] == {"used": 0, "limit": 50}


@pytest.mark.redis
def test_usage_report_reads_todays_live_counters_with_redis(grant, redis_quotas):
    metering.charge(grant, "queries", 5)
    assert not UsageDaily.objects.filter(subject=grant.quota_subject).exists(), "not rolled up yet"
    today = usage_day(timezone.now())
    (entry,) = usage_report([grant.subscription], today, today)
    assert entry["days"][0]["metrics"]["queries"] == {"used": 5, "limit": 100}


def test_usage_report_refuses_long_ranges(grant):
    today = usage_day(timezone.now())
    with pytest.raises(ValueError):
        usage_report([grant.subscription], today - timedelta(days=400), today)
