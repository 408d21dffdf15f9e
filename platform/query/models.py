"""Query jobs: a partner query run by a Celery worker, its result kept as a file for a while."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class QueryJob(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("refresh status", "Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    institution = models.ForeignKey("institutions.Institution", on_delete=models.CASCADE, related_name="query_jobs")
    client_id = models.CharField(max_length=100, blank=True, help_text="The OAuth client that submitted it (API).")
    username = models.CharField(
        max_length=150, blank=True, help_text="The portal user who submitted it (SQL workbench), when no client did."
    )
    sql = models.TextField()
    format = models.CharField(max_length=20)
    max_rows = models.PositiveIntegerField(null=True, blank=True)
    versions = models.JSONField(default=dict, blank=True, help_text="Requested versions, by dataset slug.")
    datasets = models.JSONField(
        default=dict, blank=True, help_text="The versions the job read, by dataset slug (once it succeeded)."
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Times the job went back to the queue because every query slot was busy."
    )
    rows_written = models.BigIntegerField(default=0, help_text="Progress: rows written to the result so far.")
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    result_path = models.CharField(max_length=500, blank=True, help_text="Relative to <VITAMIN_DATA_DIR>/job-results.")
    result_bytes = models.BigIntegerField(null=True, blank=True)
    truncated = models.BooleanField(default=False)
    bytes_scanned = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the running execution began.")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Written about every second by the worker running it (lost after 30 s)."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When the result stops being downloadable.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["institution", "-created_at"])]

    def __str__(self) -> str:
        return f"query job {self.id} ({self.state})"


class SavedQuery(models.Model):
    """A query a portal user kept, at a stable URL: their own, or shared with their institution's members.

    Saving stores only text. Running it is a new query with the runner's own grants, quotas and audit
    (a shared query gives no access its reader does not already have)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    institution = models.ForeignKey("institutions.Institution", on_delete=models.CASCADE, related_name="saved_queries")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_queries", help_text="Who may change it."
    )
    title = models.CharField(max_length=200)
    sql = models.TextField()
    shared = models.BooleanField(default=False, help_text="Visible to every member of the institution who may query.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["institution", "-updated_at"])]
        verbose_name_plural = "saved queries"

    def __str__(self) -> str:
        return self.title
