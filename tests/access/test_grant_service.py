"""The grant service: the one check every access path calls, its denials, and that nothing outlives a change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from catalog_support import approved, industry_table, publish_table
from django.utils import timezone

from access import service, subscriptions
from access.models import Subscription
from access.service import Denied
from audit.models import AuditEvent
from catalog.refresh import pinned_versions
from institutions import lifecycle
from institutions.models import Institution, InstitutionStatus
from vitamin.errors import status_of


def denial(institution, dataset, mode, **kwargs) -> str:
    with pytest.raises(Denied) as denied:
        service.ensure(institution, dataset, mode, **kwargs)
    assert status_of(denied.value) == 403
    assert service.allowed(institution, dataset, mode, **kwargs) is False
    return denied.value.code


def test_a_grant_carries_the_subscription_its_limits_and_pinned_version(fund, demo_datasets, plan, store_url):
    version = publish_table(demo_datasets.industry, industry_table(), store_url)
    subscription = subscriptions.request_access(fund, demo_datasets.industry, modes=["query", "download"], purpose="X.")
    subscriptions.approve(
        subscription, plan=plan, expires_at=timezone.now() + timedelta(days=5), pinned_version=version
    )
    subscriptions.set_limit_overrides(subscription, {"queries_per_day": 7, "max_result_rows": 10})

    grant = service.ensure(fund, demo_datasets.industry, "download")
    assert grant.subscription.pk == subscription.pk and grant.mode == "download"
    assert grant.pinned_version == version and service.version_for(grant) == version
    assert grant.limits.queries_per_day == 7 and grant.limits.max_result_rows == 10
    assert grant.limits.rows_returned_per_day == plan.rows_returned_per_day  # the plan's, where not overridden
    assert grant.quota_subject == f"subscription:{subscription.pk}"
    # By ids and slugs too, as the SQL gateway knows them.
    assert service.ensure(fund.pk, "industry_prosperity_monthly", "query").subscription.pk == subscription.pk


def test_an_unpinned_grant_reads_the_latest_version(fund, demo_datasets, plan, store_url):
    publish_table(demo_datasets.industry, industry_table(), store_url)
    latest = publish_table(demo_datasets.industry, industry_table(), store_url)
    grant = service.ensure(
        approved(fund, demo_datasets.industry, plan, ["query"]).institution, demo_datasets.industry, "query"
    )
    assert grant.pinned_version is None and service.version_for(grant) == latest


def test_every_denial_has_its_code(fund, bank, demo_datasets, plan):
    industry, cards = demo_datasets.industry, demo_datasets.cards
    assert denial(fund, industry, "query") == "not_subscribed"

    requested = subscriptions.request_access(fund, industry, modes=["query"], purpose="X.")
    assert denial(fund, industry, "query") == "subscription_pending"
    subscriptions.approve(requested, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    assert service.allowed(fund, industry, "query")
    assert denial(fund, industry, "download") == "mode_not_granted"
    assert denial(fund, industry, "lookup") == "mode_not_granted"
    assert denial(bank, industry, "query") == "not_subscribed", "another institution's subscription gives nothing"

    rejected = subscriptions.request_access(fund, cards, modes=["query"], purpose="X.")
    subscriptions.reject(rejected, reason="No.")
    assert denial(fund, cards, "query") == "not_subscribed"

    subscriptions.revoke(requested, reason="Ended.")
    assert denial(fund, industry, "query") == "subscription_revoked"


def test_expiry_takes_effect_at_the_exact_moment_without_the_task(fund, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"], days=1)
    just_before = subscription.expires_at - timedelta(microseconds=1)
    assert service.ensure(fund, demo_datasets.industry, "query", now=just_before)
    assert denial(fund, demo_datasets.industry, "query", now=subscription.expires_at) == "subscription_expired"
    assert Subscription.objects.get(pk=subscription.pk).status == "approved", "the stored state still lags"
    subscriptions.expire(subscription, now=subscription.expires_at)
    assert denial(fund, demo_datasets.industry, "query") == "subscription_expired"


def test_revocation_takes_effect_on_the_very_next_check(fund, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"])
    grant = service.ensure(fund, demo_datasets.industry, "query")
    assert grant.subscription.status == "approved"
    subscriptions.revoke(subscription, reason="Breach of terms.")
    assert denial(fund, demo_datasets.industry, "query") == "subscription_revoked"


def test_a_suspended_institution_is_refused_even_with_an_approved_subscription(fund, demo_datasets, plan):
    approved(fund, demo_datasets.industry, plan, ["query"])
    stale = Institution.objects.get(pk=fund.pk)  # loaded before the suspension: the service must not trust it
    lifecycle.change_status(fund, InstitutionStatus.SUSPENDED, reason="Investigation.")
    assert stale.status == InstitutionStatus.APPROVED
    assert denial(stale, demo_datasets.industry, "query") == "institution_suspended"
    assert denial(stale, demo_datasets.cards, "query") == "institution_suspended", "also without a subscription"


def test_a_dataset_whose_spec_is_gone_is_refused(fund, demo_datasets, plan):
    approved(fund, demo_datasets.industry, plan, ["query"])
    type(demo_datasets.industry).objects.filter(pk=demo_datasets.industry.pk).update(is_active=False)
    assert denial(fund, demo_datasets.industry, "query") == "dataset_unavailable"


def test_denials_are_audited_and_yes_no_checks_are_not(fund, demo_datasets):
    service.allowed(fund, demo_datasets.industry, "query")
    assert not AuditEvent.objects.filter(action="grant.denied").exists()
    with pytest.raises(Denied):
        service.ensure(fund, demo_datasets.industry, "query")
    event = AuditEvent.objects.get(action="grant.denied")
    assert event.outcome == "denied" and event.institution == str(fund.pk)
    assert event.target == "dataset:industry_prosperity_monthly"
    assert event.details == {"mode": "query", "code": "not_subscribed"}


def test_active_grants_lists_what_an_institution_may_use_now(fund, demo_datasets, plan):
    approved(fund, demo_datasets.industry, plan, ["query", "download"])
    approved(fund, demo_datasets.cards, plan, ["query"])
    expiring = approved(fund, demo_datasets.stocks, plan, ["download"], days=1)
    pending = subscriptions.request_access(fund, demo_datasets.credit, modes=["lookup"], purpose="X.")
    assert pending.status == "requested"

    downloads = service.active_grants(fund, "download")
    assert [grant.dataset.slug for grant in downloads] == ["industry_prosperity_monthly", "stock_attention_daily"]
    later = expiring.expires_at + timedelta(seconds=1)
    assert [grant.dataset.slug for grant in service.active_grants(fund, "download", now=later)] == [
        "industry_prosperity_monthly"
    ]
    assert [grant.dataset.slug for grant in service.active_grants(fund, "lookup")] == []


def test_pinned_versions_are_kept_by_retention(fund, bank, demo_datasets, plan, store_url):
    first = publish_table(demo_datasets.industry, industry_table(), store_url)
    publish_table(demo_datasets.industry, industry_table(), store_url)
    subscription = subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="X.")
    subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=3), pinned_version=first)
    assert service.pinned_version_numbers(demo_datasets.industry) == {1}
    assert pinned_versions(demo_datasets.industry) == {1}, "registered with the refresh pipeline"
    subscriptions.revoke(subscription, reason="Ended.")
    assert pinned_versions(demo_datasets.industry) == set()


def test_unknown_modes_are_a_programming_error(fund, demo_datasets):
    with pytest.raises(ValueError):
        service.allowed(fund, demo_datasets.industry, "delete")
