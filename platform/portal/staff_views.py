"""Staff pages: the staff landing page, and each dataset's operations (refresh runs with live progress,
the next scheduled run, "Refresh now", and the version history with retention and pins).

These pages read; the one thing they change, a refresh request, goes through `catalog.refresh.request_refresh`,
the path the admin action and `manage.py refresh_dataset` take, which records its audit event. When the task
queue does not take it, the answer is the site's 503 page saying so, and the run is failed with the reason. What they
show is computed by the rules the pipeline itself applies: the next run by beat's dispatcher rule
(`catalog.schedule.next_scheduled_at`), a version's fate by retention's (`datasets.publish.versions_to_retire`,
`catalog.refresh.pinned_versions`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib import messages
from django.db.models import OuterRef, Subquery
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from access.models import Subscription
from catalog.models import Dataset, DatasetVersion, RefreshRun
from catalog.refresh import pinned_versions, request_refresh
from catalog.schedule import next_scheduled_at
from datasets.publish import versions_to_retire
from institutions.models import Institution, InstitutionStatus
from vitamin.errors import outage_response
from vitamin.queueing import QueueUnavailable
from vitamin.staff import staff_required

RECENT = timedelta(hours=24)  # "failed recently" on the landing page
RUNS_SHOWN = 30
ACTIVE = (RefreshRun.Status.QUEUED, RefreshRun.Status.RUNNING)


@staff_required
def show_staff_home(request):
    now = timezone.now()
    latest = DatasetVersion.objects.filter(dataset=OuterRef("pk"), status=DatasetVersion.Status.PUBLISHED).order_by(
        "-number"
    )
    last_run = RefreshRun.objects.filter(dataset=OuterRef("pk")).order_by("-created_at")
    datasets = Dataset.objects.annotate(
        latest_number=Subquery(latest.values("number")[:1]),
        latest_published_at=Subquery(latest.values("created_at")[:1]),
        last_run_status=Subquery(last_run.values("status")[:1]),
    ).order_by("-is_active", "slug")
    failed = RefreshRun.objects.filter(status=RefreshRun.Status.FAILED, finished_at__gte=now - RECENT)
    return render(
        request,
        "portal/staff/home.html",
        {
            "pending_institutions": Institution.objects.filter(status=InstitutionStatus.PENDING).count(),
            "pending_subscriptions": Subscription.objects.filter(status=Subscription.Status.REQUESTED).count(),
            "running": RefreshRun.objects.filter(status=RefreshRun.Status.RUNNING).count(),
            "queued": RefreshRun.objects.filter(status=RefreshRun.Status.QUEUED).count(),
            "failed_runs": failed.select_related("dataset").order_by("-finished_at"),
            "datasets": [
                {
                    "dataset": dataset,
                    "last_run_label": RefreshRun.Status(dataset.last_run_status).label
                    if dataset.last_run_status
                    else "",
                    "next_run_at": next_scheduled_at(dataset, now),
                }
                for dataset in datasets
            ],
        },
    )


@staff_required
def show_dataset_operations(request, slug: str):
    dataset = get_object_or_404(Dataset, slug=slug)
    runs = list(dataset.refresh_runs.select_related("version")[:RUNS_SHOWN])
    return render(
        request,
        "portal/staff/dataset.html",
        {
            "dataset": dataset,
            "runs": runs,
            "any_active": any(run.status in ACTIVE for run in runs),
            "next_run_at": next_scheduled_at(dataset, timezone.now()),
            "history": version_history(dataset),
        },
    )


@staff_required
@require_POST
def refresh_dataset_now(request, slug: str):
    dataset = get_object_or_404(Dataset, slug=slug)
    if not dataset.is_active:
        messages.error(
            request, _("%(slug)s has no spec file any more: there is nothing to build.") % {"slug": dataset.slug}
        )
        return redirect("staff-dataset", slug=dataset.slug)
    try:
        run = request_refresh(dataset, requested_by=request.user.get_username())
    except QueueUnavailable as exc:  # the run is failed with the reason, so the page never shows it queued
        return outage_response(
            request,
            exc,
            page_message=_(
                "The task queue is not answering, so the refresh of %(slug)s could not be queued: run %(run)s is "
                "marked failed. Nothing else changed. Try again in a few seconds."
            )
            % {"slug": dataset.slug, "run": exc.details["run"]},
        )
    messages.success(request, _("Refresh of %(slug)s queued (run %(run)s).") % {"slug": dataset.slug, "run": run.pk})
    return redirect(reverse("staff-dataset", args=[dataset.slug]) + f"#run-{run.pk}")


@staff_required
def show_refresh_progress(request, pk: int):
    """A run's progress as JSON, polled by the dataset page's script (portal/refresh-progress.js)."""
    run = get_object_or_404(RefreshRun.objects.select_related("dataset", "version"), pk=pk)
    return JsonResponse(run_progress(run))


def run_progress(run: RefreshRun) -> dict:
    def moment(value):  # on the server's clock, as the page shows times
        return timezone.localtime(value).isoformat() if value else None

    return {
        "id": run.pk,
        "dataset": run.dataset.slug,
        "status": run.status,
        "status_label": run.get_status_display(),
        "finished": run.is_finished,
        "trigger": run.trigger,
        "requested_by": run.requested_by,
        "created_at": moment(run.created_at),
        "started_at": moment(run.started_at),
        "heartbeat_at": moment(run.heartbeat_at),
        "finished_at": moment(run.finished_at),
        "rows_processed": run.rows_processed,
        "duration_seconds": run.duration_seconds,
        "version": run.version.number if run.version else None,
        "error": run.error,
    }


@dataclass
class VersionRow:
    version: DatasetVersion
    fate: str
    files_kept_for_pins: bool = False
    pins: list[Subscription] = field(default_factory=list)


def version_history(dataset: Dataset) -> dict:
    """Every version with what retention has done or will do to it, and the subscriptions pinning it."""
    versions = list(dataset.versions.order_by("-number"))
    keep = dataset.current_spec.versions_kept
    published = [v.number for v in versions if v.status == DatasetVersion.Status.PUBLISHED]
    beyond_keep = set(versions_to_retire(published, keep, set()))
    next_to_go = set(versions_to_retire([*published, max(published, default=0) + 1], keep, set())) - beyond_keep
    live_pins = pinned_versions(dataset)
    pins = defaultdict(list)
    for subscription in Subscription.objects.filter(dataset=dataset, pinned_version__isnull=False).select_related(
        "institution"
    ):
        pins[subscription.pinned_version_id].append(subscription)
    rows = []
    for version in versions:
        pinned = version.number in live_pins
        if version.status == DatasetVersion.Status.RETIRED:
            retired = (
                _("retired %(when)s") % {"when": f"{timezone.localtime(version.retired_at):%Y-%m-%d %H:%M}"}
                if version.retired_at
                else _("retired")
            )
            if version.files_removed_at:
                fate = _("%(retired)s; files removed %(when)s") % {
                    "retired": retired,
                    "when": f"{timezone.localtime(version.files_removed_at):%Y-%m-%d %H:%M}",
                }
            elif pinned:
                fate = _("%(retired)s; files kept for pinned subscriptions") % {"retired": retired}
            else:
                fate = _("%(retired)s; files removed when the next version is published") % {"retired": retired}
        elif version.number in beyond_keep:
            fate = _("retired when the next version is published (beyond the newest %(keep)s)") % {"keep": keep}
        elif version.number in next_to_go:
            fate = _("kept; retired when the next version is published (newest %(keep)s kept)") % {"keep": keep}
        else:
            fate = _("kept (one of the newest %(keep)s)") % {"keep": keep}
        rows.append(VersionRow(version, fate, files_kept_for_pins=pinned, pins=pins.get(version.pk, [])))
    return {"versions_kept": keep, "rows": rows}
