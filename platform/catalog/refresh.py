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

A refresh whose worker is killed stays `running` with a heartbeat that stops. The
recovery sweep (`recover_refreshes`, every 10 s from beat and when a worker starts)
finds runs whose heartbeat is older than VITAMIN_REFRESH_STALE_SECONDS, queues them
again with a new message (a file-system queue's message is gone after a full crash;
a redelivered one finds the run `running` and leaves it to the sweep) until they have
had REFRESH_MAX_ATTEMPTS claims, then fails them, and removes the staging and scratch
folders of every build that is no longer running (`sweep_leftovers`). The attempt
number fences a run presumed dead that was only slow: its heartbeat and its publish
check that the run is still theirs.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
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
    discard_staging,
    orphan_versions,
    publish,
    remove_version,
    version_numbers,
    versions_to_retire,
)
from datasets.spec import load_spec
from datasets.storage import Store
from vitamin.background import every
from vitamin.queueing import QueueUnavailable, send_task

REFRESH_TASK = "catalog.refresh_dataset"  # catalog.tasks.refresh_dataset

log = logging.getLogger("vitamin.catalog.refresh")

HEARTBEAT_SECONDS = 2.0  # well under VITAMIN_REFRESH_STALE_SECONDS (at least 10), after which a run is presumed dead
REFRESH_MAX_ATTEMPTS = 3  # claims of one run; a run killed this often (a build that kills its worker) fails
STAGING_MAX_AGE_SECONDS = 6 * 3600  # staging folders without a build marker, and legacy scratch/build-* folders
ORPHAN_MIN_AGE_SECONDS = 3600
SCRATCH_RUN_PREFIX = "run-"  # each run builds in <VITAMIN_DATA_DIR>/scratch/run-<id>

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


class _NoLongerOurs(Exception):
    """The run was presumed dead and queued again or failed while this process still built it."""


def store() -> Store:
    return Store.from_url(settings.STORE_URL)


def stale_after() -> timedelta:
    """How old a running refresh's heartbeat may get before the run is presumed dead (VITAMIN_REFRESH_STALE_SECONDS)."""
    return timedelta(seconds=settings.REFRESH_STALE_SECONDS)


def scratch_root() -> Path:
    return settings.DATA_DIR / "scratch"


def request_refresh(
    dataset: Dataset,
    *,
    trigger: str = RefreshRun.Trigger.MANUAL,
    requested_by: str = "",
    expires_seconds: int | None = None,
) -> RefreshRun:
    """Queue a refresh on the Celery workers; returns its run (poll it for progress).

    When the broker does not take the message, the run is failed at once with the reason (never left
    `queued` with no message on its way) and QueueUnavailable is raised, its details naming the run."""
    with transaction.atomic():
        run = RefreshRun.objects.create(dataset=dataset, trigger=trigger, requested_by=requested_by)
        record(
            "dataset.refresh.request",
            **by_username_or_system(requested_by),
            target=dataset.slug,
            details={"run": run.pk, "trigger": trigger},
        )
    # By name: the task module imports this one, never the reverse. The run is committed first, so a worker
    # that takes the message at once finds it.
    try:
        result = send_task(REFRESH_TASK, args=[run.pk], expires=expires_seconds)
    except QueueUnavailable as exc:
        _finish(run, RefreshRun.Status.FAILED, error=f"not queued: the task queue did not answer ({exc.cause})")
        exc.details = {"run": run.pk}
        raise
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
        self.attempt = run.attempts
        self.report = report
        self.rows = 0
        self.lost = False

    def __call__(self, rows: int) -> None:
        self.rows = rows

    def beat(self) -> None:
        # Only while the run is still this attempt's: one presumed dead and queued again is not revived.
        if not _ours(self.run_id, self.attempt).update(rows_processed=self.rows, heartbeat_at=timezone.now()):
            self.lost = True
            return
        if self.report:
            self.report(self.rows)


def _ours(run_id: int, attempt: int):
    return RefreshRun.objects.filter(pk=run_id, status=RefreshRun.Status.RUNNING, attempts=attempt)


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
        # A redelivered message: the work is done or under way elsewhere; if its worker died, the
        # recovery sweep queues the run again once its heartbeat is stale.
        return run
    dataset = run.dataset
    claimed = _claim(run)
    if claimed is None:
        return run  # another message for this run claimed it first
    if not claimed:
        _finish(run, RefreshRun.Status.SKIPPED, error="another refresh of this dataset was running")
        return run

    target = store()
    scratch = scratch_root() / f"{SCRATCH_RUN_PREFIX}{run.pk}"
    heartbeat = _Heartbeat(run, on_progress)
    try:
        spec = load_spec(dataset.spec_path, {**spec_variables(), **(variables or {})})
        with every(HEARTBEAT_SECONDS, heartbeat.beat, name=f"refresh-heartbeat-{run.pk}"):
            result = build(
                spec,
                connector_for(spec),
                master_key=settings.PSEUDONYM_MASTER_KEY.encode(),
                release=dataset.pseudonym_release,
                store=target,
                scratch_dir=scratch,
                on_progress=heartbeat,
            )
    except ConnectorError as exc:
        if heartbeat.lost:
            return _given_up(run)
        if exc.transient:
            _requeue(run, str(exc))
            raise TransientRefreshError(str(exc)) from exc
        _finish(run, RefreshRun.Status.FAILED, error=str(exc))
        return run
    except Exception as exc:
        if heartbeat.lost:
            return _given_up(run)
        log.exception("refresh of %s failed", dataset.slug)
        _finish(run, RefreshRun.Status.FAILED, error=_failure(exc))
        return run
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

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

    if not _ours(run.pk, run.attempts).exists():
        discard(result.staging)
        return _given_up(run)
    number = _next_version_number(dataset, target)
    manifest = publish(target, dataset.slug, number, result)
    try:
        with transaction.atomic():
            # The fence, under the write: a run presumed dead meanwhile publishes nothing (its files go).
            if not _ours(run.pk, run.attempts).select_for_update().exists():
                raise _NoLongerOurs
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
    except _NoLongerOurs:
        remove_version(target, dataset.slug, number)
        return _given_up(run)
    except BaseException:
        remove_version(target, dataset.slug, number)  # never leave files no published row accounts for
        raise
    apply_retention(dataset, spec.versions_kept, target)
    return run


def _failure(exc: Exception) -> str:
    """The run's error: the exception, said plainly when it is a full disk (the store's, or the scratch
    folder's, where DuckDB spills and the anonymizer stages rows)."""
    text = f"{type(exc).__name__}: {exc}"
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
        return f"disk full: the store or <VITAMIN_DATA_DIR>/scratch has no room left ({text})"
    return text


def _given_up(run: RefreshRun) -> RefreshRun:
    """This process's attempt was presumed dead (its heartbeat went stale) and the run handed on: it stops here."""
    log.warning("refresh run %s was taken from this worker (presumed dead); its result is dropped", run.pk)
    run.refresh_from_db()
    return run


def _claim(run: RefreshRun) -> bool | None:
    """Mark `run` running: True; False when another run of its dataset is running; None when this run is no
    longer queued (another message for it claimed it first)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            Dataset.objects.select_for_update().filter(pk=run.dataset_id).first()
            this_run = RefreshRun.objects.filter(pk=run.pk, status=RefreshRun.Status.QUEUED)
            if not this_run.exists():
                return None
            for stale in RefreshRun.objects.filter(
                dataset_id=run.dataset_id, status=RefreshRun.Status.RUNNING, heartbeat_at__lt=now - stale_after()
            ).select_related("dataset"):
                _finish(stale, RefreshRun.Status.FAILED, error="the worker running it stopped responding")
            if RefreshRun.objects.filter(dataset_id=run.dataset_id, status=RefreshRun.Status.RUNNING).exists():
                return False
            this_run.update(
                status=RefreshRun.Status.RUNNING, started_at=now, heartbeat_at=now, error="", attempts=F("attempts") + 1
            )
    except IntegrityError:  # another worker claimed a run of this dataset between our check and our write
        return False
    run.refresh_from_db(fields=["status", "started_at", "heartbeat_at", "error", "attempts"])
    return True


def recover_refreshes(*, now: datetime | None = None) -> dict:
    """Runs left `running` by a dead worker (heartbeat older than VITAMIN_REFRESH_STALE_SECONDS): queued again with
    a new message until they have had REFRESH_MAX_ATTEMPTS claims, then failed; then `sweep_leftovers`.

    Each decision is a conditional update on the run as read (same status, attempt and heartbeat), so two sweeps,
    or a sweep racing a heartbeat that came back, act at most once.
    """
    now = now or timezone.now()
    retried, failed = [], []
    stale = RefreshRun.objects.filter(status=RefreshRun.Status.RUNNING, heartbeat_at__lt=now - stale_after())
    for run in stale.select_related("dataset"):
        as_read = RefreshRun.objects.filter(
            pk=run.pk, status=RefreshRun.Status.RUNNING, attempts=run.attempts, heartbeat_at=run.heartbeat_at
        )
        error = f"the worker running it stopped responding (no heartbeat since {run.heartbeat_at.isoformat()})"
        with transaction.atomic():
            if run.attempts >= REFRESH_MAX_ATTEMPTS:
                if as_read.update(
                    status=RefreshRun.Status.FAILED,
                    error=f"{error}; gave up after {run.attempts} attempts",
                    finished_at=now,
                ):
                    run.refresh_from_db()
                    _record_outcome(run)
                    failed.append(run.pk)
                continue
            if not as_read.update(status=RefreshRun.Status.QUEUED, error=f"{error}; retrying"):
                continue
            record(
                "dataset.refresh.retry",
                target=run.dataset.slug,
                outcome="interrupted",
                details={"run": run.pk, "attempt": run.attempts, "heartbeat_at": run.heartbeat_at.isoformat()},
            )
        result = current_app.send_task(REFRESH_TASK, args=[run.pk])
        RefreshRun.objects.filter(pk=run.pk).update(task_id=result.id)
        retried.append(run.pk)
    return {"retried": retried, "failed": failed, **sweep_leftovers()}


def sweep_leftovers(target: Store | None = None) -> dict:
    """Remove at once the staging folders (in the store) and scratch folders (on this host) of every build that
    is no longer running: a killed build's, whose own cleanup never ran.

    Only folders older than this call are touched: a build claimed after the running runs were read
    makes its folders after that instant.
    """
    target = target or store()
    checked_at = time.time()
    running = RefreshRun.objects.filter(status=RefreshRun.Status.RUNNING)
    running_ids = set(running.values_list("pk", flat=True))
    running_slugs = set(running.values_list("dataset__slug", flat=True))
    staging = discard_staging(target, keep_slugs=running_slugs, started_before=checked_at)
    scratch = []
    for folder in scratch_root().glob(f"{SCRATCH_RUN_PREFIX}*"):
        run_id = folder.name.removeprefix(SCRATCH_RUN_PREFIX)
        if run_id.isdigit() and int(run_id) in running_ids:
            continue
        try:
            if folder.stat().st_mtime < checked_at:
                shutil.rmtree(folder, ignore_errors=True)
                scratch.append(folder.name)
        except FileNotFoundError:
            continue
    return {"swept_staging": staging, "swept_scratch": scratch}


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
        _record_outcome(run)


def _record_outcome(run: RefreshRun) -> None:
    record(
        "dataset.refresh",
        target=run.dataset.slug,
        outcome="failure" if run.status == RefreshRun.Status.FAILED else "success",
        details={"run": run.pk, "status": run.status, "error": run.error[:500]},
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
    for folder in scratch_root().glob("build-*"):  # the layout before scratch/run-<id>
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
        **sweep_leftovers(target),
    }
