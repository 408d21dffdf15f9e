"""JSON shapes of the subscription, plan and usage API."""

from __future__ import annotations

from rest_framework import serializers

from access.models import QuotaPlan, Subscription
from access.subscriptions import PURPOSE_MAX_CHARS
from catalog.models import Dataset
from datasets.query.limits import LIMIT_NAMES
from datasets.spec import Mode


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = QuotaPlan
        fields = ["name", "description", *LIMIT_NAMES]


class SubscriptionSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    dataset_title = serializers.CharField(source="dataset.title", read_only=True)
    requested_plan = serializers.SlugRelatedField(slug_field="name", read_only=True)
    plan = serializers.SlugRelatedField(slug_field="name", read_only=True)
    pinned_version = serializers.SlugRelatedField(slug_field="number", read_only=True)
    last_day = serializers.DateField(read_only=True, allow_null=True)
    limits = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "dataset",
            "dataset_title",
            "status",
            "modes",
            "purpose",
            "requested_plan",
            "plan",
            "limits",
            "expires_at",
            "last_day",
            "pinned_version",
            "requested_at",
            "decided_at",
            "reason",
        ]

    def get_limits(self, subscription: Subscription) -> dict | None:
        limits = subscription.limits()
        return limits.to_dict() if limits else None


class SubscriptionRequestSerializer(serializers.Serializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", queryset=Dataset.objects.filter(is_active=True))
    modes = serializers.ListField(
        child=serializers.ChoiceField(choices=[(mode.value, mode.label) for mode in Mode]), allow_empty=False
    )
    purpose = serializers.CharField(max_length=PURPOSE_MAX_CHARS)
    plan = serializers.SlugRelatedField(
        slug_field="name", queryset=QuotaPlan.objects.filter(is_offered=True), required=False, allow_null=True
    )


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")
