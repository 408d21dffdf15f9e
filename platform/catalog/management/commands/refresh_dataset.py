"""Refresh datasets: queue on the workers (default), wait for the result, or build in this process."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from catalog.models import Dataset, RefreshRun
from catalog.refresh import request_refresh, run_refresh
from vitamin.queueing import QueueUnavailable


class ProgressLine:
    """A one-line progress display on a terminal; silent elsewhere (logs stay clean)."""

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.enabled = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, rows: int) -> None:
        if self.enabled:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            self.stream.write(f"\r  {self.label}: {rows:>12,} rows read  ({rows / elapsed:,.0f} rows/s)")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")


class Command(BaseCommand):
    help = "Refresh one dataset (or --all). Queues a Celery task unless --now; --wait follows the queued run."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", metavar="SLUG")
        parser.add_argument("--all", dest="every", action="store_true", help="Every active dataset.")
        parser.add_argument("--missing", action="store_true", help="Only datasets without a published version.")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--wait", action="store_true", help="Queue, then wait for the worker to finish, showing progress."
        )
        mode.add_argument("--now", action="store_true", help="Build in this process instead of on a worker.")
        parser.add_argument("--timeout", type=int, default=3600, help="Seconds --wait waits (default 3600).")

    def handle(self, *args, slugs, every, missing, wait, now, timeout, **options):
        datasets = self.select(slugs, every or missing, missing)
        failed = []
        for dataset in datasets:
            if now:
                run = RefreshRun.objects.create(dataset=dataset, trigger=RefreshRun.Trigger.MANUAL, requested_by="cli")
                progress = ProgressLine(sys.stdout, dataset.slug)
                run = run_refresh(run.pk, on_progress=progress)
                progress.done()
            else:
                try:
                    run = request_refresh(dataset, requested_by="cli")
                except QueueUnavailable as exc:
                    raise CommandError(
                        f"{dataset.slug}: not queued, the task queue is not answering ({exc.cause}); run "
                        f"{exc.details['run']} is marked failed. Is the broker running? (--now builds in this process)"
                    ) from exc
                self.stdout.write(f"  {dataset.slug}: queued run {run.pk} (task {run.task_id})")
                if not wait:
                    continue
                run = self.follow(run, timeout)
            self.report(run)
            if run.status == RefreshRun.Status.FAILED:
                failed.append(dataset.slug)
        if failed:
            raise CommandError(f"refresh failed: {', '.join(failed)}")

    def select(self, slugs: list[str], every: bool, missing: bool) -> list[Dataset]:
        if not slugs and not every:
            raise CommandError("name at least one dataset, or use --all / --missing")
        active = Dataset.objects.filter(is_active=True)
        if every:
            datasets = list(active)
            if missing:
                datasets = [d for d in datasets if d.latest_version() is None]
            return datasets
        found = {d.slug: d for d in active.filter(slug__in=slugs)}
        unknown = [slug for slug in slugs if slug not in found]
        if unknown:
            raise CommandError(f"no active dataset named {', '.join(unknown)} (run sync_datasets?)")
        return [found[slug] for slug in slugs]

    def follow(self, run: RefreshRun, timeout: int) -> RefreshRun:
        progress = ProgressLine(sys.stdout, run.dataset.slug)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run.refresh_from_db()
            progress(run.rows_processed)
            if run.is_finished:
                progress.done()
                return run
            time.sleep(0.5)
        progress.done()
        raise CommandError(f"{run.dataset.slug}: still {run.status} after {timeout}s (run {run.pk})")

    def report(self, run: RefreshRun) -> None:
        if run.status == RefreshRun.Status.PUBLISHED:
            version = run.version
            self.stdout.write(
                self.style.SUCCESS(f"  {run.dataset.slug}: published v{version.number}")
                + f" ({version.row_count:,} rows, {version.bytes:,} bytes, {run.rows_processed:,} source rows)"
            )
        elif run.status == RefreshRun.Status.FAILED:
            self.stderr.write(f"  {run.dataset.slug}: FAILED: {run.error}")
        else:
            self.stdout.write(f"  {run.dataset.slug}: {run.get_status_display().lower()}")
