"""Refreshing a dataset: claim, build (datasets.build), publish, record — and retire old versions.

The publish protocol, end to end:

1. `datasets.build.build` writes and checksums every file in a staging folder
   of the store; a failure deletes the staging folder.
2. `datasets.publish.publish` moves the staged files to `datasets/{slug}/v{n}/`
   (a rename on a local store; on S3 the manifest is written last).
3. One database transaction creates the `DatasetVersion` row, already
   published, and its audit event. Only a published row makes a version
   reachable by partners.

A crash before step 3 commits leaves the previous version serving; the files of
step 2 are then an orphan that `cleanup_store` removes. One refresh per dataset
runs at a time: a partial unique index allows a single `running` row per dataset.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.actors import by_username_or_system
from audit.service import record
from catalog.models import Dataset, DatasetVersion, RefreshRun
from catalog.sync import spec_variables
from connectors.base import ConnectorError
from datasets.build import build, connector_for
from datasets.publish import (
    cleanup_stale_staging,
    discard,
    orphan_versions,
    publish,
    remove_version,
    version_numbers,
    versions_to_retire,
)
from datasets.spec import load_spec
from datasets.storage import Store
from vitamin.background import every

REFRESH_TASK = "catalog.refresh_dataset"  # catalog.tasks.refresh_dataset

log = logging.getLogger("vitamin.catalog.refresh")

STALE_AFTER = timedelta(minutes=10)  # a running refresh whose heartbeat is older is presumed dead
HEARTBEAT_SECONDS = 2.0
STAGING_MAX_AGE_SECONDS = 6 * 3600
ORPHAN_MIN_AGE_SECONDS = 3600

# Functions (dataset -> set of version numbers) that pin versions against retention; the grants app
# registers one, so that a version a subscription is pinned to keeps its files.
_pin_providers: list[Callable[[Dataset], set[int]]] = []


def register_pin_provider(provider: Callable[[Dataset], set[int]]) -> None:
    if provider not in _pin_providers:
        _pin_providers.append(provider)


def pinned_versions(dataset: Dataset) -> set[int]:
    pinned: set[int] = set()
    for provider in _pin_providers:
        pinned |= provider(dataset)
    return pinned


class TransientRefreshError(Exception):
    """The source failed in a way that retrying may fix; the run was put back in the queue."""


def store() -> Store:
    return Store.from_url(settings.STORE_URL)


def request_refresh(
    dataset: Dataset,
    *,
    trigger: str = RefreshRun.Trigger.MANUAL,
    requested_by: str = "",
    expires_seconds: int | None = None,
) -> RefreshRun:
    """Queue a refresh on the Celery workers; returns its run (poll it for progress)."""
    with transaction.atomic():
        run = RefreshRun.objects.create(dataset=dataset, trigger=trigger, requested_by=requested_by)
        record(
            "dataset.refresh.request",
            **by_username_or_system(requested_by),
            target=dataset.slug,
            details={"run": run.pk, "trigger": trigger},
        )
    # By name: the task module imports this one, never the reverse.
    result = current_app.send_task(REFRESH_TASK, args=[run.pk], expires=expires_seconds)
    RefreshRun.objects.filter(pk=run.pk).update(task_id=result.id)
    run.task_id = result.id
    return run


class _Heartbeat:
    """Counts rows as the build reads them; `beat` (every HEARTBEAT_SECONDS, from a thread) reports them.

    DuckDB pulls source batches on its own worker threads, so the build's progress
    callback only bumps a counter; the beat writes the run's heartbeat and row count
    (and the Celery task state). Progress is best effort: the build decides the outcome.
    """

    def __init__(self, run: RefreshRun, report: Callable[[int], None] | None):
        self.run_id = run.pk
        self.report = report
        self.rows = 0

    def __call__(self, rows: int) -> None:
        self.rows = rows

    def beat(self) -> None:
        RefreshRun.objects.filter(pk=self.run_id).update(rows_processed=self.rows, heartbeat_at=timezone.now())
        if self.report:
            self.report(self.rows)


def run_refresh(
    run_id: int,
    *,
    on_progress: Callable[[int], None] | None = None,
    variables: Mapping[str, Any] | None = None,
    published_at: datetime | None = None,
) -> RefreshRun:
    """Execute a queued refresh run in this process. Idempotent for redelivered messages.

    `variables` add to the spec's variables (a backfill's `VITAMIN_DATA_UNTIL`); `published_at` is the
    publication time a backfilled version gets (default: now), which as-of reads resolve by.
    """
    run = RefreshRun.objects.select_related("dataset").get(pk=run_id)
    if run.is_finished or run.status == RefreshRun.Status.RUNNING:
        return run  # a redelivered message: the work is done or under way elsewhere
    dataset = run.dataset
    if not _claim(run):
        _finish(run, RefreshRun.Status.SKIPPED, error="another refresh of this dataset was running")
        return run

    target = store()
    try:
        spec = load_spec(dataset.spec_path, {**spec_variables(), **(variables or {})})
        heartbeat = _Heartbeat(run, on_progress)
        with every(HEARTBEAT_SECONDS, heartbeat.beat, name=f"refresh-heartbeat-{run.pk}"):
            result = build(
                spec,
                connector_for(spec),
                master_key=settings.PSEUDONYM_MASTER_KEY.encode(),
                release=dataset.pseudonym_release,
                store=target,
                scratch_dir=settings.DATA_DIR / "scratch",
                on_progress=heartbeat,
            )
    except ConnectorError as exc:
        if exc.transient:
            _requeue(run, str(exc))
            raise TransientRefreshError(str(exc)) from exc
        _finish(run, RefreshRun.Status.FAILED, error=str(exc))
        return run
    except Exception as exc:
        log.exception("refresh of %s failed", dataset.slug)
        _finish(run, RefreshRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return run

    run.rows_processed = result.source_rows
    latest = dataset.latest_version()
    if (
        latest is not None
        and latest.content_hash == result.content_hash
        and latest.pseudonym_release == result.release
        and latest.spec_fingerprint == result.spec_fingerprint  # a new spec (a role, a rule) is a new version
    ):
        discard(result.staging)
        _finish(run, RefreshRun.Status.UNCHANGED, version=latest)
        return run

    number = _next_version_number(dataset, target)
    manifest = publish(target, dataset.slug, number, result)
    try:
        with transaction.atomic():
            summary = result.to_dict()
            version = DatasetVersion.objects.create(
                dataset=dataset,
                number=number,
                location="/".join(["datasets", dataset.slug, f"v{number}"]),
                files=summary["files"],
                row_count=result.row_count,
                bytes=result.size_bytes,
                schema=summary["schema"],
                schema_hash=result.schema_hash,
                content_hash=result.content_hash,
                column_stats=summary["column_stats"],
                privacy_report=summary["privacy"],
                source_watermark=result.source_watermark or "",
                pseudonym_release=result.release,
                spec=spec.to_document(),
                spec_fingerprint=result.spec_fingerprint,
                created_at=published_at or timezone.now(),
            )
            _finish(run, RefreshRun.Status.PUBLISHED, version=version)
            record(
                "dataset.publish",
                target=f"{dataset.slug}@v{number}",
                details={
                    "run": run.pk,
                    "rows": result.row_count,
                    "bytes": result.size_bytes,
                    "build_id": manifest["build_id"],
                    **({"published_at": published_at.isoformat()} if published_at else {}),
                },
            )
    except BaseException:
        remove_version(target, dataset.slug, number)  # never leave files no published row accounts for
        raise
    apply_retention(dataset, spec.versions_kept, target)
    return run


def _claim(run: RefreshRun) -> bool:
    now = timezone.now()
    try:
        with transaction.atomic():
            Dataset.objects.select_for_update().filter(pk=run.dataset_id).first()
            for stale in RefreshRun.objects.filter(
                dataset_id=run.dataset_id, status=RefreshRun.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER
            ):
                _finish(stale, RefreshRun.Status.FAILED, error="the worker running it stopped responding")
            if RefreshRun.objects.filter(dataset_id=run.dataset_id, status=RefreshRun.Status.RUNNING).exists():
                return False
            run.status = RefreshRun.Status.RUNNING
            run.started_at = run.heartbeat_at = now
            run.error = ""
            run.save(update_fields=["status", "started_at", "heartbeat_at", "error"])
    except IntegrityError:  # another worker claimed it between our check and our write
        return False
    return True


def _requeue(run: RefreshRun, error: str) -> None:
    run.status = RefreshRun.Status.QUEUED
    run.error = f"retrying after a transient source error: {error}"
    run.save(update_fields=["status", "error"])


def _finish(run: RefreshRun, status: str, *, error: str = "", version: DatasetVersion | None = None) -> None:
    run.status = status
    run.error = error
    run.version = version
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "version", "finished_at", "rows_processed"])
    if status != RefreshRun.Status.PUBLISHED:  # a publication is recorded with its version, in one transaction
        record(
            "dataset.refresh",
            target=run.dataset.slug,
            outcome="failure" if status == RefreshRun.Status.FAILED else "success",
            details={"run": run.pk, "status": status, "error": error[:500]},
        )


def _next_version_number(dataset: Dataset, target: Store) -> int:
    in_database = dataset.versions.aggregate(highest=Max("number"))["highest"] or 0
    in_store = max(version_numbers(target, dataset.slug), default=0)  # an orphan keeps its number taken
    return max(in_database, in_store) + 1


def apply_retention(dataset: Dataset, versions_kept: int, target: Store) -> list[int]:
    """Retire published versions beyond `versions_kept`; remove retired versions' files unless pinned."""
    pinned = pinned_versions(dataset)
    published = list(dataset.versions.filter(status=DatasetVersion.Status.PUBLISHED).values_list("number", flat=True))
    # Pins do not stop retirement (a retired version leaves the catalog); they only keep its files for the pinned grants.
    retire = versions_to_retire(published, versions_kept, set())
    now = timezone.now()
    if retire:
        with transaction.atomic():
            dataset.versions.filter(number__in=retire).update(status=DatasetVersion.Status.RETIRED, retired_at=now)
            record("dataset.retire", target=dataset.slug, details={"versions": retire})
    for version in dataset.versions.filter(status=DatasetVersion.Status.RETIRED, files_removed_at__isnull=True):
        if version.number not in pinned:
            remove_version(target, dataset.slug, version.number)
            DatasetVersion.objects.filter(pk=version.pk).update(files_removed_at=now)
    return retire


def cleanup_store(target: Store | None = None) -> dict:
    """Remove stale staging folders and orphan version folders; fail runs whose message expired unclaimed."""
    target = target or store()
    removed_staging = cleanup_stale_staging(target, STAGING_MAX_AGE_SECONDS)
    removed_orphans: list[str] = []
    now_seconds = time.time()
    for dataset in Dataset.objects.all():
        published = dataset.versions.values_list("number", flat=True)
        for number in orphan_versions(target, dataset.slug, published):
            path = target.path("datasets", dataset.slug, f"v{number}")
            modified = target.modified_seconds(path)
            if modified is not None and now_seconds - modified > ORPHAN_MIN_AGE_SECONDS:
                remove_version(target, dataset.slug, number)
                removed_orphans.append(f"{dataset.slug}/v{number}")
    removed_scratch = []
    for folder in (settings.DATA_DIR / "scratch").glob("build-*"):  # left by builds killed mid-way
        if now_seconds - folder.stat().st_mtime > STAGING_MAX_AGE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            removed_scratch.append(folder.name)
    expired = RefreshRun.objects.filter(
        status=RefreshRun.Status.QUEUED, created_at__lt=timezone.now() - timedelta(days=1)
    )
    expired_count = expired.update(
        status=RefreshRun.Status.FAILED, error="no worker took it in time", finished_at=timezone.now()
    )
    return {
        "staging": removed_staging,
        "orphans": removed_orphans,
        "scratch": removed_scratch,
        "expired_runs": expired_count,
    }
