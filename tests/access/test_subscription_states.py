"""The subscription state machine: every legal and illegal transition, reasons, validation, fail-closed audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from catalog_support import card_transactions_table, industry_table, publish_table
from django.core import mail
from django.utils import timezone

from access import subscriptions
from access.models import Subscription, SubscriptionChange
from audit.models import AuditEvent
from vitamin.errors import status_of
from vitamin.refusals import Refusal

STATES = ["requested", "approved", "rejected", "revoked", "expired", "cancelled"]
ACTIONS = ["request", "approve", "reject", "revoke", "expire", "cancel", "grant"]
# The life cycle: (state, action) -> the state it leads to. Every pair not listed must be refused with 409.
LEGAL = {
    ("requested", "approve"): "approved",
    ("requested", "reject"): "rejected",
    ("requested", "cancel"): "cancelled",
    ("requested", "grant"): "approved",
    ("approved", "revoke"): "revoked",
    ("approved", "expire"): "expired",
    ("approved", "cancel"): "cancelled",
    ("approved", "grant"): "approved",
    ("rejected", "request"): "requested",
    ("rejected", "grant"): "approved",
    ("expired", "request"): "requested",
    ("expired", "grant"): "approved",
    ("cancelled", "request"): "requested",
    ("cancelled", "grant"): "approved",
    ("revoked", "grant"): "approved",  # only an admin's direct grant reinstates a revoked subscription
}
FAR_FUTURE = timedelta(days=400)


def in_state(state: str, institution, dataset, plan) -> Subscription:
    subscription = subscriptions.request_access(institution, dataset, modes=["query"], purpose="Research.", plan=plan)
    if state in ("approved", "revoked", "expired"):
        subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=30))
    if state == "rejected":
        subscriptions.reject(subscription, reason="Purpose unclear.")
    elif state == "revoked":
        subscriptions.revoke(subscription, reason="Terms breached.")
    elif state == "expired":
        subscriptions.expire(subscription, now=timezone.now() + FAR_FUTURE)
    elif state == "cancelled":
        subscriptions.cancel(subscription)
    assert subscription.status == state
    return subscription


def perform(action: str, subscription: Subscription, plan) -> Subscription:
    in_a_month = timezone.now() + timedelta(days=30)
    if action == "request":
        return subscriptions.request_access(
            subscription.institution, subscription.dataset, modes=["query"], purpose="Again.", plan=plan
        )
    if action == "approve":
        return subscriptions.approve(subscription, plan=plan, expires_at=in_a_month)
    if action == "reject":
        return subscriptions.reject(subscription, reason="No.")
    if action == "revoke":
        return subscriptions.revoke(subscription, reason="No longer.")
    if action == "expire":
        return subscriptions.expire(subscription, now=timezone.now() + FAR_FUTURE)
    if action == "cancel":
        return subscriptions.cancel(subscription)
    return subscriptions.grant(
        subscription.institution, subscription.dataset, modes=["query"], plan=plan, expires_at=in_a_month
    )


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", ACTIONS)
def test_every_transition(state, action, fund, demo_datasets, plan):
    subscription = in_state(state, fund, demo_datasets.industry, plan)
    changes_before = SubscriptionChange.objects.count()
    events_before = AuditEvent.objects.filter(action=f"subscription.{action}").count()

    if (state, action) in LEGAL:
        result = perform(action, subscription, plan)
        assert result.pk == subscription.pk, "the same row lives on"
        assert Subscription.objects.get(pk=subscription.pk).status == LEGAL[(state, action)]
        change = SubscriptionChange.objects.filter(subscription=subscription).first()
        assert (change.action, change.from_status, change.to_status) == (action, state, LEGAL[(state, action)])
        event = AuditEvent.objects.filter(action=f"subscription.{action}").order_by("-seq").first()
        assert event.target == f"subscription:{subscription.pk}"
        assert event.details["from"] == state and event.details["to"] == LEGAL[(state, action)]
    else:
        with pytest.raises(Refusal) as refused:
            perform(action, subscription, plan)
        assert (status_of(refused.value), refused.value.code) == (409, "invalid_transition")
        assert refused.value.details == {"status": state, "action": action}
        assert Subscription.objects.get(pk=subscription.pk).status == state
        assert SubscriptionChange.objects.count() == changes_before
        assert AuditEvent.objects.filter(action=f"subscription.{action}").count() == events_before


def test_first_request_and_first_grant_start_from_nothing(fund, demo_datasets, plan):
    requested = subscriptions.request_access(
        fund, demo_datasets.industry, modes=["download", "query"], purpose="Index.", plan=plan
    )
    assert requested.status == "requested" and requested.modes == ["query", "download"]
    assert requested.changes.get().from_status == ""

    granted = subscriptions.grant(
        fund, demo_datasets.cards, modes=["query"], plan=plan, expires_at=timezone.now() + timedelta(days=1)
    )
    assert granted.status == "approved" and granted.plan == plan
    assert (granted.changes.get().action, granted.changes.get().from_status) == ("grant", "")


def test_an_expiry_that_has_passed_counts_before_any_action(fund, demo_datasets, plan):
    subscription = in_state("approved", fund, demo_datasets.industry, plan)
    Subscription.objects.filter(pk=subscription.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Refusal) as refused:
        subscriptions.revoke(subscription, reason="Too late.")
    assert refused.value.code == "invalid_transition" and refused.value.details["status"] == "expired"
    # Requesting again works straight away, without waiting for the expiry task.
    again = subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="Renewal.")
    assert again.status == "requested"
    assert [change.action for change in again.changes.order_by("pk")][-2:] == ["expire", "request"]


def test_expire_refuses_a_subscription_that_is_not_due(fund, demo_datasets, plan):
    subscription = in_state("approved", fund, demo_datasets.industry, plan)
    with pytest.raises(Refusal) as refused:
        subscriptions.expire(subscription)
    assert refused.value.code == "invalid_transition"
    assert Subscription.objects.get(pk=subscription.pk).status == "approved"


@pytest.mark.parametrize("action", ["reject", "revoke"])
def test_rejection_and_revocation_need_a_reason(action, fund, demo_datasets, plan):
    subscription = in_state("requested" if action == "reject" else "approved", fund, demo_datasets.industry, plan)
    with pytest.raises(Refusal) as refused:
        getattr(subscriptions, action)(subscription, reason="   ")
    assert (status_of(refused.value), refused.value.code) == (400, "invalid_request")
    assert Subscription.objects.get(pk=subscription.pk).status == subscription.status


@pytest.mark.parametrize(
    ("dataset", "modes", "accepted"),
    [
        ("industry", ["query", "download"], True),
        ("industry", ["lookup"], False),
        ("cards", ["query"], True),
        ("cards", ["download"], False),
        ("credit", ["lookup"], True),
        ("credit", ["query"], False),
        ("industry", [], False),
    ],
)
def test_requested_modes_are_limited_by_the_tier(dataset, modes, accepted, fund, demo_datasets):
    target = getattr(demo_datasets, dataset)
    if accepted:
        assert subscriptions.request_access(fund, target, modes=modes, purpose="Use.").status == "requested"
        return
    with pytest.raises(Refusal) as refused:
        subscriptions.request_access(fund, target, modes=modes, purpose="Use.")
    assert refused.value.code == "invalid_request"
    assert not Subscription.objects.exists()


def test_a_purpose_is_required(fund, demo_datasets):
    with pytest.raises(Refusal) as refused:
        subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose=" \n")
    assert refused.value.code == "invalid_request" and "purpose" in refused.value.message
    assert not Subscription.objects.exists()


def test_approval_sets_the_terms(fund, demo_datasets, plan, store_url):
    version = publish_table(demo_datasets.industry, industry_table(), store_url)
    subscription = subscriptions.request_access(fund, demo_datasets.industry, modes=["query", "download"], purpose="X.")
    expires_at = timezone.now() + timedelta(days=90)
    subscriptions.approve(subscription, plan=plan, expires_at=expires_at, pinned_version=version, modes=["query"])
    stored = Subscription.objects.get(pk=subscription.pk)
    assert (stored.plan, stored.expires_at, stored.pinned_version, stored.modes) == (
        plan,
        expires_at,
        version,
        ["query"],
    )


def test_approval_refuses_a_past_expiry_and_another_datasets_version(fund, demo_datasets, plan, store_url):
    other = publish_table(demo_datasets.cards, card_transactions_table(), store_url)
    subscription = subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="X.")
    for terms in (
        {"expires_at": timezone.now() - timedelta(minutes=1)},
        {"expires_at": timezone.now() + timedelta(days=1), "pinned_version": other},
    ):
        with pytest.raises(Refusal) as refused:
            subscriptions.approve(subscription, plan=plan, **terms)
        assert refused.value.code == "invalid_request"
    assert Subscription.objects.get(pk=subscription.pk).status == "requested"


def test_a_failed_audit_write_undoes_the_change(fund, demo_datasets, plan, monkeypatch):
    subscription = in_state("requested", fund, demo_datasets.industry, plan)

    def broken_audit(*args, **kwargs):
        raise RuntimeError("audit database unavailable")

    monkeypatch.setattr(subscriptions, "record", broken_audit)
    with pytest.raises(RuntimeError):
        subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    assert Subscription.objects.get(pk=subscription.pk).status == "requested"
    assert SubscriptionChange.objects.filter(subscription=subscription).count() == 1


def test_decisions_are_mailed_to_the_partner(fund, alice, demo_datasets, plan, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="X.", by=alice)
        subscriptions.approve(first, plan=plan, expires_at=timezone.now() + timedelta(days=10))
        subscriptions.revoke(first, reason="Contract ended.")
        second = subscriptions.request_access(fund, demo_datasets.cards, modes=["query"], purpose="Y.", by=alice)
        subscriptions.reject(second, reason="Not for index construction.")
    subjects = [message.subject for message in mail.outbox]
    assert subjects == [
        "[Vitamin] Access to Industry prosperity, monthly approved",
        "[Vitamin] Access to Industry prosperity, monthly revoked",
        "[Vitamin] Access to Card transactions (de-identified) not approved",
    ]
    assert all(sorted(message.to) == sorted([fund.contact_email, alice.email]) for message in mail.outbox)
    assert "Reason: Contract ended." in mail.outbox[1].body
    assert "Reason: Not for index construction." in mail.outbox[2].body
