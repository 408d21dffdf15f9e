"""The platform staff's review queue: approve or reject requests, revoke subscriptions, one at a time or in bulk.

One POST endpoint takes every decision. The pressed button says what and for
whom (`approve:12`, `reject-selected`, ...); an approval reads its row's terms
(`plan-12`, `last_day-12`, `pin-12`), so a bulk approval applies each row's own.
Each decision is its own transaction: one that fails is reported and the others stand.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from access import subscriptions
from access.models import QuotaPlan, Subscription
from catalog.models import DatasetVersion
from vitamin.refusals import Refusal
from vitamin.staff import staff_required

DECISIONS = ("approve", "reject", "revoke")


@staff_required
def review_subscriptions(request):
    published = DatasetVersion.objects.filter(status=DatasetVersion.Status.PUBLISHED).order_by("-number")
    rows = Subscription.objects.select_related("institution", "dataset", "requested_plan", "plan", "requested_by")
    pending = rows.filter(status=Subscription.Status.REQUESTED).prefetch_related(
        Prefetch("dataset__versions", queryset=published, to_attr="published_versions")
    )
    return render(
        request,
        "portal/subscriptions/review.html",
        {
            "pending": pending.order_by("requested_at"),
            "active": rows.filter(status=Subscription.Status.APPROVED).order_by("expires_at"),
            "plans": list(QuotaPlan.objects.all()),
            "default_last_day": timezone.localdate() + timedelta(days=subscriptions.DEFAULT_TERM_DAYS),
        },
    )


@staff_required
@require_POST
def decide_subscriptions(request):
    decision, _, target = request.POST.get("action", "").partition(":")
    if decision.endswith("-selected"):
        decision = decision.removesuffix("-selected")
        ids = request.POST.getlist("selected")
        reason = request.POST.get("bulk_reason", "")
    else:
        ids = [target]
        reason = request.POST.get(f"reason-{target}", "")
    if decision not in DECISIONS or not ids or not all(pk.isdigit() for pk in ids):
        messages.error(request, "Select at least one subscription and press one of the buttons.")
        return redirect("subscription-review")
    found = Subscription.objects.select_related("institution", "dataset").in_bulk([int(pk) for pk in ids])
    done = []
    for pk in sorted(found):
        subscription = found[pk]
        name = f"{subscription.institution.legal_name} → {subscription.dataset.slug}"
        try:
            _decide(request, decision, subscription, reason)
        except Refusal as exc:
            messages.error(request, f"{name}: {exc.message}")
        else:
            done.append(name)
    if done:
        messages.success(request, f"{_PAST[decision].capitalize()}: {'; '.join(done)}.")
    return redirect("subscription-review")


_PAST = {"approve": "approved", "reject": "rejected", "revoke": "revoked"}


def _decide(request, decision: str, subscription: Subscription, reason: str) -> None:
    if decision == "reject":
        subscriptions.reject(subscription, reason=reason, by=request.user, request=request)
    elif decision == "revoke":
        subscriptions.revoke(subscription, reason=reason, by=request.user, request=request)
    else:
        plan, last_day, pinned = _terms(request.POST, subscription)
        subscriptions.approve(
            subscription,
            plan=plan,
            expires_at=subscriptions.expiry_from_date(last_day),
            pinned_version=pinned,
            by=request.user,
            request=request,
        )


def _terms(form, subscription: Subscription) -> tuple[QuotaPlan, date, DatasetVersion | None]:
    """The plan, last day and pinned version chosen in the subscription's row."""
    pk = subscription.pk
    plan = QuotaPlan.objects.filter(pk=_number(form.get(f"plan-{pk}"))).first()
    if plan is None:
        raise subscriptions.invalid_request("Choose a plan.")
    try:
        last_day = date.fromisoformat(form.get(f"last_day-{pk}", ""))
    except ValueError:
        raise subscriptions.invalid_request("Give the last day of access as a date.") from None
    if last_day < timezone.localdate():
        raise subscriptions.invalid_request("The last day of access cannot be in the past.")
    pinned = None
    if form.get(f"pin-{pk}"):
        pinned = DatasetVersion.objects.filter(pk=_number(form.get(f"pin-{pk}")), dataset=subscription.dataset).first()
        if pinned is None:
            raise subscriptions.invalid_request("The pinned version is not a version of this dataset.")
    return plan, last_day, pinned


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0
