"""The subscription API for partners: plans, my subscriptions, request and cancel, usage.

Scopes: reading plans and subscriptions needs catalog:read; requesting and
cancelling needs subscriptions:write (and, for a token a member delegated to a
tool, that the member still be an owner or admin); usage needs usage:read.
A partner only ever sees its own institution's subscriptions.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from access import subscriptions, usage
from access.models import QuotaPlan, Subscription
from access.serializers import CancelSerializer, PlanSerializer, SubscriptionRequestSerializer, SubscriptionSerializer
from institutions.models import MANAGER_ROLES, Member
from vitamin.api import PartnerListView, PartnerView
from vitamin.errors import ApiError

USAGE_DEFAULT_DAYS = 7


def my_subscriptions(request):
    return Subscription.objects.filter(institution_id=request.auth_client.institution_id).select_related(
        "dataset", "plan", "requested_plan", "pinned_version"
    )


def ensure_can_manage_subscriptions(request) -> None:
    """A token a member delegated to a tool acts with that member's current role, not the one they had."""
    user = request.user
    if getattr(user, "pk", None) is None:
        return  # the institution's own client (client credentials)
    roles = Member.objects.filter(user=user, institution_id=request.auth_client.institution_id).values_list(
        "role", flat=True
    )
    if not set(roles) & set(MANAGER_ROLES):
        raise ApiError(
            "Only owners and admins of the institution manage its subscriptions.",
            code="permission_denied",
            status_code=403,
        )


class PlanList(PartnerListView):
    serializer_class = PlanSerializer
    queryset = QuotaPlan.objects.filter(is_offered=True)

    @extend_schema(summary="Quota plans one may ask for")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class SubscriptionList(PartnerListView):
    serializer_class = SubscriptionSerializer

    @property
    def required_scope(self) -> str:  # read by oauth.permissions.HasScope
        return "subscriptions:write" if self.request.method == "POST" else "catalog:read"

    @extend_schema(
        summary="My institution's subscriptions",
        parameters=[OpenApiParameter("status", str, enum=Subscription.Status.values)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        rows = my_subscriptions(self.request)
        status = self.request.query_params.get("status")
        if status:
            if status not in Subscription.Status.values:
                raise ApiError(
                    f"status must be one of {', '.join(Subscription.Status.values)}.", code="invalid_request"
                )
            rows = rows.filter(status=status)
        return rows

    @extend_schema(
        summary="Request access to a dataset",
        request=SubscriptionRequestSerializer,
        responses={201: SubscriptionSerializer},
    )
    def post(self, request):
        ensure_can_manage_subscriptions(request)
        form = SubscriptionRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        subscription = subscriptions.request_access(
            request.auth_client.institution,
            form.validated_data["dataset"],
            modes=form.validated_data["modes"],
            purpose=form.validated_data["purpose"],
            plan=form.validated_data.get("plan"),
            by=request.user,
            request=request,
        )
        subscription = my_subscriptions(request).get(pk=subscription.pk)
        return Response(SubscriptionSerializer(subscription).data, status=201)


class SubscriptionDetail(PartnerView):
    @extend_schema(summary="One of my institution's subscriptions", responses=SubscriptionSerializer)
    def get(self, request, pk: int):
        return Response(SubscriptionSerializer(get_mine(request, pk)).data)


class CancelSubscription(PartnerView):
    required_scope = "subscriptions:write"

    @extend_schema(
        summary="Withdraw a request, or give up an approved subscription (access ends at once)",
        request=CancelSerializer,
        responses=SubscriptionSerializer,
    )
    def post(self, request, pk: int):
        ensure_can_manage_subscriptions(request)
        subscription = get_mine(request, pk)
        form = CancelSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        subscriptions.cancel(subscription, reason=form.validated_data["reason"], by=request.user, request=request)
        return Response(SubscriptionSerializer(get_mine(request, pk)).data)


class Usage(PartnerView):
    required_scope = "usage:read"

    @extend_schema(
        summary="Consumption against limits, per subscription and day",
        parameters=[
            OpenApiParameter(
                "from", str, description=f"First day, YYYY-MM-DD (default: {USAGE_DEFAULT_DAYS - 1} days ago)."
            ),
            OpenApiParameter("to", str, description="Last day, YYYY-MM-DD (default: today, platform time zone)."),
            OpenApiParameter("subscription", int, description="Only this subscription."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        today = timezone.localdate()
        day_to = _day(request.query_params.get("to"), "to", today)
        day_from = _day(request.query_params.get("from"), "from", day_to - timedelta(days=USAGE_DEFAULT_DAYS - 1))
        rows = my_subscriptions(request).exclude(plan__isnull=True).order_by("dataset__slug")
        if request.query_params.get("subscription"):
            rows = rows.filter(pk=_whole_number(request.query_params["subscription"], "subscription"))
        try:
            report = usage.usage_report(list(rows), day_from, day_to)
        except ValueError as exc:
            raise ApiError(f"Days: {exc}.", code="invalid_request") from None
        return Response({"from": day_from.isoformat(), "to": day_to.isoformat(), "subscriptions": report})


def get_mine(request, pk: int) -> Subscription:
    subscription = my_subscriptions(request).filter(pk=pk).first()
    if subscription is None:  # another institution's looks exactly like a missing one
        raise ApiError(f"You have no subscription {pk}.", code="subscription_not_found", status_code=404)
    return subscription


def _day(text: str | None, name: str, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(f"{name} must be a date, YYYY-MM-DD.", code="invalid_request") from None


def _whole_number(text: str, name: str) -> int:
    if not text.isdigit():
        raise ApiError(f"{name} must be a whole number.", code="invalid_request")
    return int(text)
