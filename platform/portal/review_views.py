"""The platform staff's review queues: subscription requests (approve, reject, revoke) and institution
applications (approve, reject), one at a time or in bulk.

One POST endpoint per queue takes every decision. The pressed button says what and for
whom (`approve:12`, `reject-selected`, ...); a subscription's approval reads its row's terms
(`plan-12`, `last_day-12`, `pin-12`), so a bulk approval applies each row's own.
Each decision is its own transaction, audited by the service that makes it (`access.subscriptions`,
`institutions.lifecycle`): one that fails is reported and the others stand.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from access import subscriptions
from access.models import QuotaPlan, Subscription, SubscriptionChange
from catalog.models import DatasetVersion
from institutions import lifecycle
from institutions.models import Institution, InstitutionStatus
from vitamin.refusals import Refusal
from vitamin.staff import staff_required

DECISIONS = ("approve", "reject", "revoke")
INSTITUTION_DECISIONS = {"approve": InstitutionStatus.APPROVED, "reject": InstitutionStatus.CLOSED}


@staff_required
def review_subscriptions(request):
    published = DatasetVersion.objects.filter(status=DatasetVersion.Status.PUBLISHED).order_by("-number")
    rows = Subscription.objects.select_related("institution", "dataset", "requested_plan", "plan", "requested_by")
    # What was decided before, with its reason: the reviewer reads why a request came back.
    decided = SubscriptionChange.objects.exclude(reason="").exclude(action="request").order_by("-changed_at", "-pk")
    pending = rows.filter(status=Subscription.Status.REQUESTED).prefetch_related(
        Prefetch("dataset__versions", queryset=published, to_attr="published_versions"),
        Prefetch("changes", queryset=decided, to_attr="earlier_decisions"),
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
    pressed = _pressed(request.POST, DECISIONS)
    if pressed is None:
        messages.error(request, _("Select at least one subscription and press one of the buttons."))
        return redirect("subscription-review")
    decision, ids, reason = pressed
    found = Subscription.objects.select_related("institution", "dataset").in_bulk(ids)
    _each(
        request,
        found,
        lambda subscription: f"{subscription.institution.legal_name} → {subscription.dataset.slug}",
        lambda subscription: _decide(request, decision, subscription, reason),
        _PAST[decision],
    )
    return redirect("subscription-review")


@staff_required
@require_POST
def decide_institutions(request):
    """Approve or reject (close) pending applications: one, or every selected with the one reason given."""
    pressed = _pressed(request.POST, tuple(INSTITUTION_DECISIONS))
    if pressed is None:
        messages.error(request, _("Select at least one application and press one of the buttons."))
        return redirect("review-queue")
    decision, ids, reason = pressed
    found = Institution.objects.filter(status=InstitutionStatus.PENDING).in_bulk(ids)
    _each(
        request,
        found,
        lambda institution: institution.legal_name,
        lambda institution: lifecycle.change_status(
            institution, INSTITUTION_DECISIONS[decision], reason=reason, by=request.user, request=request
        ),
        _PAST[decision],
    )
    return redirect("review-queue")


_PAST = {"approve": gettext_lazy("Approved"), "reject": gettext_lazy("Rejected"), "revoke": gettext_lazy("Revoked")}


def _pressed(form, decisions: tuple[str, ...]) -> tuple[str, list[int], str] | None:
    """What the pressed button decides, for which ids, with which reason; None when it is not clear."""
    decision, _, target = form.get("action", "").partition(":")
    if decision.endswith("-selected"):
        decision = decision.removesuffix("-selected")
        ids, reason = form.getlist("selected"), form.get("bulk_reason", "")
    else:
        ids, reason = [target], form.get(f"reason-{target}", "")
    if decision not in decisions or not ids or not all(pk.isdigit() for pk in ids):
        return None
    return decision, [int(pk) for pk in ids], reason


def _each(request, found: dict, name, decide, past: str) -> None:
    """Decide each found row on its own (in id order), then say what was done and what was refused and why."""
    done = []
    for pk in sorted(found):
        row = found[pk]
        try:
            decide(row)
        except (Refusal, lifecycle.StatusChangeError) as exc:
            messages.error(request, f"{name(row)}: {getattr(exc, 'message', None) or exc}")
        else:
            done.append(name(row))
    if done:
        messages.success(request, _("%(decision)s: %(names)s.") % {"decision": past, "names": "; ".join(done)})


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
        raise subscriptions.invalid_request(_("Choose a plan."))
    try:
        last_day = date.fromisoformat(form.get(f"last_day-{pk}", ""))
    except ValueError:
        raise subscriptions.invalid_request(_("Give the last day of access as a date.")) from None
    if last_day < timezone.localdate():
        raise subscriptions.invalid_request(_("The last day of access cannot be in the past."))
    pinned = None
    if form.get(f"pin-{pk}"):
        pinned = DatasetVersion.objects.filter(pk=_number(form.get(f"pin-{pk}")), dataset=subscription.dataset).first()
        if pinned is None:
            raise subscriptions.invalid_request(_("The pinned version is not a version of this dataset."))
    return plan, last_day, pinned


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0
