"""Backfill the monthly history of datasets whose spec has a `history` block (catalog.history)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from catalog.history import Month, backfill
from catalog.models import Dataset, RefreshRun
from vitamin.refusals import Refusal


def month(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(f"{value}-01")
    except ValueError:
        raise CommandError(f"not a month: {value!r} (write YYYY-MM)") from None


class Command(BaseCommand):
    help = (
        "Build one version per month of the spec's `history` (the data as it stood at each month's end), "
        "published at the spec's publication time, so that as-of reads have a history. In this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", metavar="SLUG")
        parser.add_argument(
            "--missing", action="store_true", help="Every active dataset with a history and no version yet."
        )
        parser.add_argument("--from", dest="first", type=month, help="First month, YYYY-MM (default: the spec's).")
        parser.add_argument("--to", dest="last", type=month, help="Last month, YYYY-MM (default: the spec's).")

    def handle(self, *args, slugs, missing, first, last, **options):
        if not slugs and not missing:
            raise CommandError("name at least one dataset, or use --missing")
        active = Dataset.objects.filter(is_active=True)
        if missing:
            datasets = [d for d in active if d.current_spec.history is not None and not d.versions.exists()]
        else:
            found = {d.slug: d for d in active.filter(slug__in=slugs)}
            unknown = [slug for slug in slugs if slug not in found]
            if unknown:
                raise CommandError(f"no active dataset named {', '.join(unknown)} (run sync_datasets?)")
            datasets = [found[slug] for slug in slugs]
        failed = []
        for dataset in datasets:
            try:
                runs = backfill(dataset, first_month=first, last_month=last, on_month=self.report(dataset))
            except Refusal as exc:
                raise CommandError(str(exc)) from None
            published = sum(run.status == RefreshRun.Status.PUBLISHED for run in runs)
            self.stdout.write(f"  {dataset.slug}: {published} monthly version(s) published")
            failed += [f"{dataset.slug} {run.requested_by}" for run in runs if run.status == RefreshRun.Status.FAILED]
        if failed:
            raise CommandError(f"backfill failed for: {', '.join(failed)}")

    def report(self, dataset: Dataset):
        def line(month: Month, run: RefreshRun) -> None:
            what = f"v{run.version.number}" if run.status == RefreshRun.Status.PUBLISHED else run.status
            error = f": {run.error}" if run.error else ""
            self.stdout.write(
                f"  {dataset.slug} {month.first_day:%Y-%m} (published {month.published_at:%Y-%m-%d %H:%M %Z}): {what}{error}",
                ending="\n",
            )

        return line
