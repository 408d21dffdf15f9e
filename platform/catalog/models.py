"""The dataset registry: datasets (synced from spec files), their immutable versions, and refresh runs."""

from __future__ import annotations

import hashlib
import json

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from datasets.spec import DatasetSpec, Tier
from vitamin import access_generation as generation
from vitamin.prepared import PreparedLookup

# The tiers' names in the portal's languages: datasets.spec keeps them in English (no Django there), and
# tests/portal/test_i18n.py holds the two equal.
TIER_CHOICES = [(Tier.OPEN.value, _("Open")), (Tier.AGGREGATE.value, _("Aggregate")), (Tier.LOOKUP.value, _("Lookup"))]


class Dataset(models.Model):
    """A curated dataset. Its metadata is owned by its spec file; `sync_datasets` copies it here."""

    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    publisher = models.CharField(max_length=200, blank=True)
    contact = models.CharField(max_length=200, blank=True)
    license = models.TextField(blank=True, help_text="Terms of use.")
    keywords = models.JSONField(default=list, blank=True)
    theme = models.CharField(max_length=100, blank=True)
    tier = models.CharField(max_length=20, choices=TIER_CHOICES)
    update_frequency = models.CharField(max_length=50, blank=True)
    schedule = models.CharField(max_length=100, blank=True, help_text="Cron expression, in the server's time zone.")
    spec = models.JSONField(
        default=dict,
        help_text="The spec file as loaded (DatasetSpec.to_document()): the next build's, and the catalog's.",
    )
    spec_path = models.CharField(max_length=500, blank=True)
    spec_hash = models.CharField(max_length=64, blank=True)
    pseudonym_release = models.CharField(
        max_length=50,
        default="r1",
        help_text="Key epoch for pseudonyms: stable across refreshes; change it to re-key every pseudonym.",
    )
    is_active = models.BooleanField(default=True, help_text="False once its spec file is gone.")
    last_scheduled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def latest_version(self) -> DatasetVersion | None:
        """The newest published version, read now (a query's path: compiled once, `vitamin.prepared`)."""
        version = _LATEST_PUBLISHED.first(self.pk)
        if version is not None:
            version.dataset = self
        return version

    def version_at(self, moment) -> DatasetVersion | None:
        """The version that was current at `moment`: the newest published by then (it may be retired now).
        Every as-of read path resolves a time this way."""
        return self.versions.filter(created_at__lte=moment).order_by("-number").first()

    @property
    def current_spec(self) -> DatasetSpec:
        """The spec the next build will use. A published version is governed by its own (`DatasetVersion.dataset_spec`)."""
        return spec_from_document(self.spec, self.spec_hash)


class DatasetVersion(models.Model):
    """One immutable, published build of a dataset. Rows exist only for versions whose files are complete."""

    class Status(models.TextChoices):
        PUBLISHED = "published", pgettext_lazy("version status", "Published")
        RETIRED = "retired", _("Retired")

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PUBLISHED)
    location = models.CharField(max_length=500, help_text="Folder of the version's files, relative to the store root.")
    files = models.JSONField(default=list, help_text="[{path, bytes, sha256, rows}] relative to `location`.")
    row_count = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    schema = models.JSONField(default=list, help_text="[{name, type, role}] of the published columns.")
    schema_hash = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64, help_text="Hash of the data itself, to skip identical refreshes.")
    column_stats = models.JSONField(default=dict)
    privacy_report = models.JSONField(default=dict)
    source_watermark = models.CharField(max_length=100, blank=True)
    pseudonym_release = models.CharField(max_length=50)
    spec = models.JSONField(
        default=dict,
        help_text="The spec this version was built from (DatasetSpec.to_document()): it governs every read.",
    )
    spec_fingerprint = models.CharField(max_length=64, blank=True, help_text="That spec's fingerprint.")
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    files_removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.dataset.slug} v{self.number}"

    @property
    def data_files(self) -> list[dict]:
        """The entries of `files` that hold the data rows (not a lookup key's index file)."""
        return [entry for entry in self.files if not entry.get("index")]

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The spec this version was built from: its tier, column roles, privacy and analysis rules, whatever
        the spec file says today."""
        return spec_from_document(self.spec, self.spec_fingerprint)


class RefreshRun(models.Model):
    """One attempt to refresh a dataset, from request to outcome."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("refresh status", "Queued")
        RUNNING = "running", _("Running")
        PUBLISHED = "published", _("Published a new version")
        UNCHANGED = "unchanged", _("Unchanged (identical content)")
        SKIPPED = "skipped", _("Skipped (another refresh was running)")
        FAILED = "failed", _("Failed")

    FINISHED = (Status.PUBLISHED, Status.UNCHANGED, Status.SKIPPED, Status.FAILED)

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", pgettext_lazy("refresh trigger", "Schedule")
        MANUAL = "manual", _("Manual")
        BOOTSTRAP = "bootstrap", _("Bootstrap")
        BACKFILL = "backfill", _("Backfill of the monthly history")

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="refresh_runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    task_id = models.CharField(max_length=100, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_processed = models.BigIntegerField(default=0)
    # Claims so far: a run whose worker was killed is queued again (catalog.refresh.recover_refreshes) until
    # it has been tried REFRESH_MAX_ATTEMPTS times; a heartbeat carries the attempt, so a presumed-dead one cannot write.
    attempts = models.PositiveSmallIntegerField(default=0)
    version = models.ForeignKey(DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["dataset", "status"])]
        constraints = [
            # One refresh per dataset at a time, guaranteed by the database rather than by timing.
            models.UniqueConstraint(
                fields=["dataset"], condition=models.Q(status="running"), name="one_running_refresh"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.slug} refresh #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


# Parsed specs by fingerprint (the sha256 of the resolved spec, so equal fingerprints are equal specs):
# every query reads its versions' specs, and parsing a document each time would cost more than the lookup.
_SPECS: dict[str, DatasetSpec] = {}
_SPECS_KEPT = 256


def spec_from_document(document: dict, fingerprint: str) -> DatasetSpec:
    """The DatasetSpec a stored document describes (raises ValueError when it is not one)."""
    key = fingerprint or hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    spec = _SPECS.get(key)
    if spec is None:
        spec = DatasetSpec.from_document(document)
        if len(_SPECS) >= _SPECS_KEPT:
            _SPECS.pop(next(iter(_SPECS)), None)
        _SPECS[key] = spec
    return spec


_LATEST_PUBLISHED = PreparedLookup(
    lambda dataset_id: DatasetVersion.objects.filter(
        dataset_id=dataset_id, status=DatasetVersion.Status.PUBLISHED
    ).order_by("-number"),
    int,
    cached_by=generation.current,
)
