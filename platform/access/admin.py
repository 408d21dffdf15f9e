"""Django admin: plans are edited here; subscriptions are read here and decided on the portal's review page.

Every save is audited in the admin's own transaction (fail closed). A
subscription's only editable field is its limit overrides, saved through
access.subscriptions so the change gets its history row and audit event.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.forms.models import model_to_dict

from access import subscriptions
from access.models import QuotaPlan, Subscription, SubscriptionChange
from audit.service import record
from datasets.query.limits import LIMIT_NAMES, clean_overrides
from vitamin.refusals import Refusal


@admin.register(QuotaPlan)
class QuotaPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "is_offered", *LIMIT_NAMES]
    list_filter = ["is_offered"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        values = {name: value for name, value in model_to_dict(obj).items() if name in form.changed_data}
        record(
            "plan.change" if change else "plan.create",
            target=f"plan:{obj.name}",
            details={"plan": obj.name, "changed": values},
            request=request,
        )

    def delete_model(self, request, obj):
        name = obj.name
        super().delete_model(request, obj)
        record("plan.delete", target=f"plan:{name}", details={"plan": name}, request=request)

    def has_delete_permission(self, request, obj=None) -> bool:
        # A plan in use is protected by the database; bulk deletion would skip the audit event.
        return super().has_delete_permission(request, obj) and obj is not None


class ChangeInline(admin.TabularInline):
    model = SubscriptionChange
    extra = 0
    can_delete = False
    readonly_fields = ["changed_at", "action", "from_status", "to_status", "actor", "reason", "details"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class SubscriptionForm(forms.ModelForm):
    class Meta:
        model = Subscription
        fields = ["limit_overrides", "lookup_fields", "lookup_threshold_only"]

    def clean_limit_overrides(self):
        try:
            return clean_overrides(self.cleaned_data["limit_overrides"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["institution", "dataset", "status", "plan", "expires_at", "requested_at"]
    list_filter = ["status", "plan", "dataset"]
    search_fields = ["institution__legal_name", "dataset__slug", "purpose"]
    list_select_related = ["institution", "dataset", "plan"]
    readonly_fields = [
        "institution",
        "dataset",
        "status",
        "modes",
        "purpose",
        "requested_plan",
        "plan",
        "expires_at",
        "pinned_version",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
        "reason",
        "expiry_notice_sent_at",
    ]
    fields = [*readonly_fields, "limit_overrides", "lookup_fields", "lookup_threshold_only"]
    inlines = [ChangeInline]

    def has_add_permission(self, request) -> bool:
        return False  # partners request on the portal or the API; admins grant with grant_subscription

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the history stays; end access by revoking

    def save_model(self, request, obj, form, change):
        try:
            subscriptions.set_limit_overrides(
                obj, form.cleaned_data["limit_overrides"], by=request.user, request=request
            )
            if {"lookup_fields", "lookup_threshold_only"} & set(form.changed_data):
                subscriptions.set_lookup_terms(
                    obj,
                    fields=form.cleaned_data["lookup_fields"] or [],
                    threshold_only=form.cleaned_data["lookup_threshold_only"],
                    by=request.user,
                    request=request,
                )
        except Refusal as exc:  # validated by the form already; kept as a guard
            raise forms.ValidationError(exc.message) from None
