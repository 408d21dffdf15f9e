"""Tables of the database quota backend, and UsageDaily, the usage read side for every backend."""

from __future__ import annotations

from django.db import models

from quotas.windows import Window

SUBJECT_MAX_LENGTH = 200
METRIC_MAX_LENGTH = 64
LEASE_ID_MAX_LENGTH = 64


class QuotaCounter(models.Model):
    """How much of `metric` `subject` has used in one fixed window (database backend only)."""

    subject = models.CharField(max_length=SUBJECT_MAX_LENGTH)
    metric = models.CharField(max_length=METRIC_MAX_LENGTH)
    window = models.CharField(max_length=16, choices=Window.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField(db_index=True)
    used = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            # The window is part of the key: a day starts on a minute boundary too.
            models.UniqueConstraint(
                fields=["subject", "metric", "window", "window_start"], name="quotas_counter_one_per_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.metric} {self.window}@{self.window_start:%Y-%m-%d %H:%M}Z: {self.used}"


class QuotaLeaseGuard(models.Model):
    """One row per (subject, metric) that lease acquisition locks, so count-then-insert is serialized."""

    subject = models.CharField(max_length=SUBJECT_MAX_LENGTH)
    metric = models.CharField(max_length=METRIC_MAX_LENGTH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subject", "metric"], name="quotas_lease_guard_unique")]

    def __str__(self) -> str:
        return f"{self.subject} {self.metric}"


class QuotaLease(models.Model):
    """A held concurrency slot (database backend only); it no longer counts once `expires_at` has passed."""

    subject = models.CharField(max_length=SUBJECT_MAX_LENGTH)
    metric = models.CharField(max_length=METRIC_MAX_LENGTH)
    lease_id = models.CharField(max_length=LEASE_ID_MAX_LENGTH, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["subject", "metric", "expires_at"], name="quotas_lease_live")]

    def __str__(self) -> str:
        return f"{self.subject} {self.metric} {self.lease_id}"


class UsageDaily(models.Model):
    """Total consumed per subject, metric and day (settings.TIME_ZONE): what billing and the usage page read."""

    subject = models.CharField(max_length=SUBJECT_MAX_LENGTH)
    metric = models.CharField(max_length=METRIC_MAX_LENGTH)
    day = models.DateField()
    amount = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subject", "metric", "day"], name="quotas_usage_one_per_day")]
        indexes = [models.Index(fields=["day", "metric"], name="quotas_usage_by_day")]
        verbose_name_plural = "usage daily"

    def __str__(self) -> str:
        return f"{self.subject} {self.metric} {self.day}: {self.amount}"
