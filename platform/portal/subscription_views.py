"""A partner's subscription pages: the list for the viewer's institutions, one subscription, cancelling.

Members see their institutions' subscriptions; owners and admins cancel them;
platform staff see every subscription (and decide them on the review page).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from access import subscriptions
from access.models import Subscription
from institutions.access import ensure_manager, ensure_member
from institutions.models import MANAGER_ROLES, Member
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
    return render(
        request,
        "portal/subscriptions/list.html",
        {
            "rows": [
                (subscription, subscription.institution_id in managed and subscriptions.can(subscription, "cancel"))
                for subscription in rows
            ]
        },
    )


@login_required
def show_subscription(request, pk: int):
    subscription = get_object_or_404(
        Subscription.objects.select_related(
            "institution", "dataset", "plan", "requested_plan", "pinned_version", "requested_by", "decided_by"
        ),
        pk=pk,
    )
    member = ensure_member(request.user, subscription.institution)
    return render(
        request,
        "portal/subscriptions/detail.html",
        {
            "subscription": subscription,
            "limits": subscription.limits(),
            "history": subscription.changes.all()[:50],
            "can_cancel": member is not None and member.can_manage and subscriptions.can(subscription, "cancel"),
            "can_request_again": member is not None
            and member.can_manage
            and subscription.pk is not None
            and subscriptions.can(subscription, "request"),
        },
    )


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
        messages.success(request, "The subscription was cancelled.")
    return redirect("subscription", pk=pk)
