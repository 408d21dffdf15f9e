"""The SQL workbench: write a query beside the granted datasets' schemas, run it, page, chart, export, save.

    GET  /workbench/                          the editor (?institution=, ?sql= to start from a text)
    POST /workbench/                          run: the first VITAMIN_WORKBENCH_ROWS rows as a grid and a chart
    POST /workbench/export                    the whole result (the plan's row cap) as CSV, Arrow or Parquet
    POST /workbench/jobs                      run it as a job; GET /workbench/jobs/<id>/ (.json: progress)
    POST /workbench/jobs/<id>/cancel          cancel; GET /workbench/jobs/<id>/result downloads it
    POST /workbench/saved                     keep the text; GET /workbench/saved/<uuid>/ its stable URL

Every run is `query.service.run_query` (and jobs `query.jobs`) with the signed-in user as the actor: the
grants, versions, quotas, limits and audit of the API, not a second path. Pages refuse with the API's
stable code and message; an engine error that names a position is shown at that place in the SQL.
"""

from __future__ import annotations

import json
import time
from html import escape

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from audit.actors import by_user
from audit.models import ActorType, AuditEvent
from audit.service import record
from datasets.query.formats import MEDIA_TYPES
from portal import workbench
from query import jobs
from query.models import QueryJob, SavedQuery
from query.service import run_query
from query.views import result_response
from vitamin.errors import status_of
from vitamin.refusals import Refusal

EXPORT_FORMATS = {"csv": "csv", "arrow": "arrows", "parquet": "parquet"}
MAX_SQL_CHARS = 100_000
HISTORY_ENTRIES = 20
MAX_TITLE_CHARS = SavedQuery._meta.get_field("title").max_length


def _sql_of(request) -> str:
    sql = request.POST.get("sql", "")
    if len(sql) > MAX_SQL_CHARS:
        raise Refusal(
            _("The query is longer than %(limit)s characters.") % {"limit": f"{MAX_SQL_CHARS:,}"},
            code="invalid_request",
        )
    if not sql.strip():
        raise Refusal(_("Write a query first."), code="invalid_request")
    return sql


@login_required
def workbench_page(request):
    """The editor; a POST runs the query and shows its first rows."""
    source = request.POST if request.method == "POST" else request.GET
    institution = workbench.institution_for(request.user, source.get("institution"))
    context = {"sql": source.get("sql", "")}
    if request.method == "POST":
        try:
            context.update(_run(request, institution))
        except Refusal as exc:
            return _refused(request, institution, exc)
    return _render(request, institution, context)


def _run(request, institution) -> dict:
    sql = _sql_of(request)
    started = time.monotonic()
    run = run_query(
        institution_id=institution.pk,
        username=request.user.get_username(),
        sql=sql,
        fmt="json",
        max_rows=settings.WORKBENCH_ROWS,
        request=request,
    )
    with run.chunks as chunks:
        body = json.loads(b"".join(chunks))
    if "error" in body:  # failed after its first rows: the API ends the document with it, as here
        raise Refusal(body["error"]["message"], code=body["error"]["code"])
    columns = [column["name"] for column in body["columns"]]
    return {
        "result": {
            "columns": body["columns"],
            "row_count": len(body["rows"]),
            "truncated": body["truncated"],
            "max_rows": run.max_rows,
            "versions": sorted(run.versions.items()),
            "elapsed_ms": round((time.monotonic() - started) * 1000),
            "grid": _grid(columns, body["rows"]),
            "chart_data": {"columns": body["columns"], "rows": body["rows"]},
        }
    }


def _grid(columns: list[str], rows: list[list]) -> str:
    """The result table's rows as HTML, every value escaped (built here, not in a template loop: a
    1,000-row grid renders in milliseconds)."""
    parts = []
    for row in rows:
        cells = "".join(_cell(value) for value in row)
        parts.append(f"<tr>{cells}</tr>")
    return mark_safe("\n".join(parts))  # noqa: S308 - every value went through escape()


def _cell(value) -> str:
    if value is None:
        return '<td class="null">null</td>'
    if isinstance(value, bool):
        return f"<td>{'true' if value else 'false'}</td>"
    if isinstance(value, int | float):
        return f'<td class="num">{value}</td>'
    if isinstance(value, list | dict):
        return f"<td>{escape(json.dumps(value, ensure_ascii=False))}</td>"
    return f"<td>{escape(str(value))}</td>"


def _error(exc: Refusal, sql: str) -> dict:
    details = exc.details if isinstance(exc.details, dict) else {}
    place = workbench.error_place(sql, details.get("position"))
    error = {"code": exc.code, "message": exc.message, "status": status_of(exc), "place": place}
    if place is not None:
        line = sql.split("\n")[place["line"] - 1]
        error["line_text"] = line
        error["caret"] = " " * (place["column"] - 1) + "^"
    return error


def _refused(request, institution, exc: Refusal):
    """The editor again with the posted SQL and the refusal, under the refusal's HTTP status."""
    sql = request.POST.get("sql", "")
    return _render(request, institution, {"sql": sql, "error": _error(exc, sql)}, status=status_of(exc))


def _render(request, institution, context: dict, *, status: int = 200):
    user = request.user
    memberships = workbench.query_memberships(user)
    saved = SavedQuery.objects.filter(institution=institution).filter(Q(owner=user) | Q(shared=True))
    context.update(
        institution=institution,
        memberships=memberships,
        panels=workbench.panels(institution),
        saved_queries=saved.select_related("owner")[:50],
        history=_history(user, institution),
        jobs=QueryJob.objects.filter(institution=institution, username=user.get_username())[:10],
        export_formats=list(EXPORT_FORMATS),
        rows_shown=settings.WORKBENCH_ROWS,
    )
    return render(request, "portal/workbench/workbench.html", context, status=status)


def _history(user, institution) -> list[dict]:
    """The user's own latest queries for this institution, as the audit log has them (one source of truth)."""
    events = AuditEvent.objects.filter(
        action="query.run",
        actor_type=ActorType.USER,
        actor_id=user.get_username(),
        institution=str(institution.pk),
    ).order_by("-seq")[:HISTORY_ENTRIES]
    return [
        {
            "seq": event.seq,
            "timestamp": event.timestamp,
            "outcome": event.outcome,
            "sql": event.details.get("sql", ""),
            "rows": event.details.get("rows"),
            "code": event.details.get("code"),
            "duration_ms": event.details.get("duration_ms"),
            "link": _editor_url(institution, event.details.get("sql", "")),
        }
        for event in events
    ]


def _editor_url(institution, sql: str) -> str:
    return f"{reverse('workbench')}?{urlencode({'institution': institution.pk, 'sql': sql})}"


@login_required
@require_POST
def export_result(request):
    """The whole result as a file (the plan's row cap), streamed as the engine produces it."""
    institution = workbench.institution_for(request.user, request.POST.get("institution"))
    fmt = request.POST.get("format", "")
    try:
        if fmt not in EXPORT_FORMATS:
            raise Refusal(
                _("Choose an export format: %(formats)s.") % {"formats": ", ".join(EXPORT_FORMATS)},
                code="invalid_request",
            )
        run = run_query(
            institution_id=institution.pk,
            username=request.user.get_username(),
            sql=_sql_of(request),
            fmt=fmt,
            request=request,
        )
    except Refusal as exc:
        return _refused(request, institution, exc)
    response = StreamingHttpResponse(run.chunks, content_type=MEDIA_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="query-{stamp}.{EXPORT_FORMATS[fmt]}"'
    response["X-Vitamin-Max-Rows"] = str(run.max_rows)
    response["Cache-Control"] = "no-store"
    return response


# --- jobs -----------------------------------------------------------------------------------------


@login_required
@require_POST
def submit_job(request):
    institution = workbench.institution_for(request.user, request.POST.get("institution"))
    fmt = request.POST.get("format") or "parquet"
    try:
        if fmt not in MEDIA_TYPES:
            raise Refusal(
                _("Choose a result format: %(formats)s.") % {"formats": ", ".join(MEDIA_TYPES)},
                code="invalid_request",
            )
        job = jobs.submit_job(
            institution_id=institution.pk,
            username=request.user.get_username(),
            sql=_sql_of(request),
            fmt=fmt,
            request=request,
        )
    except Refusal as exc:
        return _refused(request, institution, exc)
    return redirect("workbench-job", job_id=job.pk)


def _job_for(request, job_id) -> QueryJob:
    """A job of an institution the user may query for (as the API shows the institution's jobs to its clients)."""
    job = get_object_or_404(QueryJob.objects.select_related("institution"), pk=job_id)
    allowed = {member.institution_id for member in workbench.query_memberships(request.user)}
    if job.institution_id not in allowed:
        raise Http404("No such job.")
    return job


def job_state(job: QueryJob) -> dict:
    return {
        "id": str(job.pk),
        "state": job.state,
        "state_label": job.get_state_display(),  # in the page's language
        "finished": job.state in QueryJob.FINISHED,
        "rows_written": job.rows_written,
        "result_bytes": job.result_bytes,
        "truncated": job.truncated,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@login_required
def show_job(request, job_id):
    job = _job_for(request, job_id)
    if request.GET.get("format") == "json":
        return JsonResponse(job_state(job), headers={"Cache-Control": "no-store"})
    return render(
        request,
        "portal/workbench/job.html",
        {"job": job, "state": job_state(job), "editor_url": _editor_url(job.institution, job.sql)},
    )


@login_required
@require_POST
def cancel_job(request, job_id):
    job = _job_for(request, job_id)
    try:
        jobs.cancel_job(job, request=request)
    except Refusal as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    else:
        messages.success(request, _("The job was cancelled."))
    return redirect("workbench-job", job_id=job.pk)


@login_required
def job_result(request, job_id):
    job = _job_for(request, job_id)
    try:
        return result_response(job, request, via="portal")
    except Refusal as exc:
        return render(
            request,
            "portal/workbench/job.html",
            {"job": job, "state": job_state(job), "refusal": exc, "editor_url": _editor_url(job.institution, job.sql)},
            status=status_of(exc),
        )


# --- saved queries ---------------------------------------------------------------------------------


def _saved_for(request, pk) -> SavedQuery:
    """A saved query the user may read: their own, or one shared in an institution they may query for."""
    saved = get_object_or_404(SavedQuery.objects.select_related("institution", "owner"), pk=pk)
    allowed = {member.institution_id for member in workbench.query_memberships(request.user)}
    if saved.institution_id not in allowed or (saved.owner_id != request.user.pk and not saved.shared):
        raise Http404("No such saved query.")
    return saved


@login_required
@require_POST
def save_query(request):
    institution = workbench.institution_for(request.user, request.POST.get("institution"))
    title = request.POST.get("title", "").strip()
    try:
        sql = _sql_of(request)
        if not title or len(title) > MAX_TITLE_CHARS:
            raise Refusal(
                _("Give the query a title of at most %(limit)s characters.") % {"limit": MAX_TITLE_CHARS},
                code="invalid_request",
            )
    except Refusal as exc:
        return _refused(request, institution, exc)
    saved = SavedQuery.objects.create(
        institution=institution, owner=request.user, title=title, sql=sql, shared=bool(request.POST.get("shared"))
    )
    _record_saved("query.save", request, saved)
    messages.success(request, _("Saved “%(title)s”.") % {"title": saved.title})
    return redirect("workbench-saved", pk=saved.pk)


@login_required
def saved_query(request, pk):
    """A saved query's stable URL: the editor with its text; its owner may change or delete it (POST)."""
    saved = _saved_for(request, pk)
    if request.method == "POST":
        if saved.owner_id != request.user.pk:
            raise PermissionDenied(_("Only the person who saved a query may change it."))
        if request.POST.get("action") == "delete":
            _record_saved("query.unsave", request, saved)
            saved.delete()
            messages.success(request, _("Deleted “%(title)s”.") % {"title": saved.title})
            return redirect(f"{reverse('workbench')}?institution={saved.institution_id}")
        try:
            saved.sql = _sql_of(request)
        except Refusal as exc:
            messages.error(request, f"{exc.message} ({exc.code})")
            return redirect("workbench-saved", pk=saved.pk)
        saved.title = (request.POST.get("title", "").strip() or saved.title)[:MAX_TITLE_CHARS]
        saved.shared = bool(request.POST.get("shared"))
        saved.updated_at = timezone.now()
        saved.save()
        _record_saved("query.save", request, saved)
        messages.success(request, _("Updated “%(title)s”.") % {"title": saved.title})
        return redirect("workbench-saved", pk=saved.pk)
    context = {"sql": saved.sql, "saved": saved, "can_edit": saved.owner_id == request.user.pk}
    return _render(request, saved.institution, context)


def _record_saved(action: str, request, saved: SavedQuery) -> None:
    record(
        action,
        **by_user(request.user, saved.institution_id),
        target=f"saved_query:{saved.pk}",
        details={"title": saved.title, "shared": saved.shared, "sql": saved.sql},
        request=request,
    )
