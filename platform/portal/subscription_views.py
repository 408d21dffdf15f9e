"""A partner's subscription pages: the list for the viewer's institutions, one subscription, cancelling.

Members see their institutions' subscriptions; owners and admins cancel them;
platform staff see every subscription (and decide them on the review page).
Usage is read through `access.usage` (the numbers of the usage API) and each limit
is explained by `access.plan_terms`.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from access import subscriptions, usage
from access.models import Subscription
from access.plan_terms import daily_term, metrics_for, plan_terms
from institutions.access import ensure_manager, ensure_member
from institutions.models import MANAGER_ROLES, Member
from portal import charts
from vitamin.refusals import Refusal


@login_required
def list_subscriptions(request):
    memberships = Member.objects.filter(user=request.user)
    rows = (
        Subscription.objects.filter(institution__in=memberships.values("institution"))
        .select_related("institution", "dataset", "plan")
        .order_by("institution__legal_name", "dataset__slug")
    )
    managed = set(memberships.filter(role__in=MANAGER_ROLES).values_list("institution_id", flat=True))
    rows = list(rows)
    today = usage.usage_today([subscription for subscription in rows if subscription.plan_id])
    return render(
        request,
        "portal/subscriptions/list.html",
        {
            "rows": [
                (
                    subscription,
                    subscription.institution_id in managed and subscriptions.can(subscription, "cancel"),
                    _nearest_limit(today.get(subscription.pk, []), subscription.modes),
                )
                for subscription in rows
            ]
        },
    )


def _nearest_limit(metrics: list[usage.MetricUsage], modes: list[str]) -> dict | None:
    """The metric of the subscription's modes closest to its daily limit today (the list's one-line summary),
    or None without a plan."""
    relevant = set(metrics_for(modes))
    limited = [each for each in metrics if each.daily_limit and (each.metric in relevant or each.used_today)]
    if not limited:
        return None
    nearest = max(limited, key=lambda each: (each.share_today, each.used_today))
    return {"usage": nearest, "term": daily_term(nearest.metric)}


@login_required
def show_subscription(request, pk: int):
    subscription = get_object_or_404(
        Subscription.objects.select_related(
            "institution", "dataset", "plan", "requested_plan", "pinned_version", "requested_by", "decided_by"
        ),
        pk=pk,
    )
    member = ensure_member(request.user, subscription.institution)
    limits = subscription.limits()
    return render(
        request,
        "portal/subscriptions/detail.html",
        {
            "subscription": subscription,
            "limits": limits,
            "terms": plan_terms(limits, subscription.modes) if limits else [],
            "usage": _usage_rows(subscription) if limits else [],
            "time_zone": timezone.get_default_timezone_name(),
            "history": subscription.changes.all()[:50],
            "can_cancel": member is not None and member.can_manage and subscriptions.can(subscription, "cancel"),
            "can_request_again": member is not None
            and member.can_manage
            and subscription.pk is not None
            and subscriptions.can(subscription, "request"),
        },
    )


def _usage_rows(subscription: Subscription) -> list[dict]:
    """Per daily metric of the subscription's modes (and any other it used): today's and this month's use, its limit
    and what happens there, and a 30-day chart."""
    relevant = set(metrics_for(subscription.modes))
    rows = []
    for each in usage.subscription_usage(subscription):
        if each.metric not in relevant and not (each.used_this_month or any(amount for _, amount in each.days)):
            continue
        term = daily_term(each.metric)
        rows.append(
            {
                "usage": each,
                "term": term,
                "chart": charts.daily_columns(each.days, label=term.label, unit=term.unit, limit=each.daily_limit),
            }
        )
    return rows


@login_required
@require_POST
def cancel_subscription(request, pk: int):
    subscription = get_object_or_404(Subscription.objects.select_related("institution"), pk=pk)
    ensure_manager(request.user, subscription.institution)
    try:
        subscriptions.cancel(subscription, reason=request.POST.get("reason", ""), by=request.user, request=request)
    except Refusal as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The subscription was cancelled."))
    return redirect("subscription", pk=pk)
