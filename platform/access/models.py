"""Who may use which dataset, how and how much: quota plans, subscriptions and their history.

Subscriptions change state only through `access.subscriptions` (history row, audit
event and email in one place); whether one gives access right now is answered
only by `access.service`.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from catalog.models import Dataset, DatasetVersion
from datasets.query.limits import LIMIT_NAMES, Limits
from institutions.models import Institution


class QuotaPlan(models.Model):
    """A named set of limits. Changing a plan changes every subscription on it at the next request."""

    name = models.SlugField(max_length=50, unique=True)
    description = models.TextField(blank=True)
    is_offered = models.BooleanField(default=True, help_text="Partners may ask for this plan when requesting access.")
    queries_per_day = models.PositiveBigIntegerField(default=1000)
    rows_returned_per_day = models.PositiveBigIntegerField(default=10_000_000)
    bytes_scanned_per_day = models.PositiveBigIntegerField(default=50 * 1024**3)
    bytes_downloaded_per_day = models.PositiveBigIntegerField(default=10 * 1024**3)
    lookups_per_day = models.PositiveBigIntegerField(default=10_000)
    cohort_customers_per_day = models.PositiveBigIntegerField(default=1_000_000)
    concurrent_queries = models.PositiveIntegerField(default=2)
    max_query_seconds = models.PositiveIntegerField(default=60)
    max_result_rows = models.PositiveBigIntegerField(default=1_000_000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def limits(self) -> Limits:
        return Limits(**{name: getattr(self, name) for name in LIMIT_NAMES})


class Subscription(models.Model):
    """One institution's access to one dataset, through its whole life (requested again after a
    rejection, expiry or cancellation, the same row goes back to `requested`)."""

    class Status(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        REVOKED = "revoked", _("Revoked")
        EXPIRED = "expired", _("Expired")
        CANCELLED = "cancelled", _("Cancelled")

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="subscriptions")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    modes = models.JSONField(default=list, help_text="Access modes: query, download, lookup.")
    purpose = models.TextField(help_text="What the partner will use the data for, in their words.")
    requested_plan = models.ForeignKey(QuotaPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(QuotaPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions")
    limit_overrides = models.JSONField(
        default=dict, blank=True, help_text='Limits that differ from the plan\'s, e.g. {"queries_per_day": 5000}.'
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    lookup_fields = models.JSONField(
        default=list,
        blank=True,
        help_text="Lookup datasets: the fields a lookup may return; empty for every field the dataset offers.",
    )
    lookup_threshold_only = models.BooleanField(
        default=False,
        help_text="Lookup datasets: answer only Y/N against a cut-off (no values, no cohorts).",
    )
    pinned_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="pinning_subscriptions"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was last rejected, revoked or cancelled.")
    expiry_notice_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "dataset"], name="one_subscription_per_dataset"),
            models.CheckConstraint(
                condition=~models.Q(status="approved") | models.Q(plan__isnull=False, expires_at__isnull=False),
                name="approved_subscription_has_plan_and_expiry",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.institution} → {self.dataset.slug} ({self.status})"

    @property
    def quota_subject(self) -> str:
        """Whom the quota service counts this subscription's usage against."""
        return f"subscription:{self.pk}"

    @property
    def last_day(self) -> date | None:
        """The last calendar day of access, in the platform's time zone (access ends at the next midnight)."""
        if self.expires_at is None:
            return None
        return timezone.localtime(self.expires_at - timedelta(microseconds=1)).date()

    def limits(self) -> Limits | None:
        """The plan's limits with this subscription's overrides; None before a plan is set."""
        if self.plan is None:
            return None
        return self.plan.limits().with_overrides(self.limit_overrides)


class SubscriptionChange(models.Model):
    """Who did what to a subscription, when and why (the portal shows it; the audit log proves it)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="changes")
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, choices=Subscription.Status.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=Subscription.Status.choices)
    actor = models.CharField(
        max_length=255, blank=True, help_text="Username, OAuth client id, or empty for the system."
    )
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.subscription_id}: {self.action} ({self.from_status or '-'} → {self.to_status})"


class AccessGeneration(models.Model):
    """One row whose `value` the database itself changes, by triggers, with every write to a table an access
    decision reads (tokens, clients, institutions, users, subscriptions, plans, datasets, versions): the
    version counter that lets `vitamin.access_generation` cache those reads per process and still see a revocation
    on the very next request. Never written by the application."""

    value = models.BigIntegerField()

    def __str__(self) -> str:
        return f"access generation {self.value}"
