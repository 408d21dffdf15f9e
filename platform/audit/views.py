"""Portal pages of the audit log: an institution's own trail (owners and admins), and the staff search with exports.

Both read filters through `audit.search` (the API's module) and record each read as `audit.read`
(`audit.reads`); a partner's reads count against its institution's per-minute limit like the API's.
Owners and admins read the trail: the roles that may delegate the `audit:read` scope.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from audit import verification
from audit.actors import by_user
from audit.chain import ChainHead, canonical_json
from audit.exports import csv_lines, jsonl_lines
from audit.models import ActorType, AuditEvent
from audit.reads import record_read, take_read, trail_of
from audit.search import PARTNER_FILTERS, AuditFilters, newest_first
from institutions.access import ensure_member
from institutions.models import MANAGER_ROLES, Institution, Member
from vitamin.errors import status_of
from vitamin.refusals import Refusal
from vitamin.staff import staff_required

PAGE_SIZE = 50
TRAIL_ROLES = MANAGER_ROLES
EXPORTS = {
    "jsonl": (jsonl_lines, "application/jsonl; charset=utf-8"),
    "csv": (csv_lines, "text/csv; charset=utf-8"),
}


@login_required
def pick_trail(request):
    """A member of several institutions picks whose trail to read; with one, it opens at once."""
    memberships = list(Member.objects.filter(user=request.user, role__in=TRAIL_ROLES).select_related("institution"))
    if len(memberships) == 1 and not request.user.is_staff:
        return redirect("institution-audit", pk=memberships[0].institution_id)
    return render(request, "audit/pick.html", {"memberships": memberships})


@login_required
def show_trail(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    ensure_member(request.user, institution, TRAIL_ROLES)
    actor = by_user(request.user, institution.pk)
    try:
        filters = AuditFilters.parse(request.GET, names=PARTNER_FILTERS)
        take_read(institution.pk, view="events", actor=actor, request=request)
    except Refusal as refusal:
        return _refused(request, "audit/trail.html", refusal, {"institution": institution})
    events, next_before_seq = newest_first(filters.apply(trail_of(institution.pk)), PAGE_SIZE)
    record_read("events", details=_read_details(filters, events), actor=actor, request=request)
    return render(
        request,
        "audit/trail.html",
        _listing(request, filters, events, next_before_seq) | {"institution": institution},
    )


@login_required
@require_POST
def verify_trail(request, pk: int):
    institution = get_object_or_404(Institution, pk=pk)
    ensure_member(request.user, institution, TRAIL_ROLES)
    actor = by_user(request.user, institution.pk)
    text = request.POST.get("anchor", "").strip()
    try:
        anchor = ChainHead.parse(text) if text else None
    except ValueError as exc:
        messages.error(request, _("Anchor: %(problem)s") % {"problem": exc})
        return redirect("institution-audit", pk=pk)
    try:
        take_read(institution.pk, view="verify", actor=actor, request=request)
    except Refusal as refusal:
        messages.error(request, refusal.message)
        return redirect("institution-audit", pk=pk)
    result = verification.verify(anchor)
    record_read(
        "verify",
        details={"ok": result.ok, "head": str(result.chain.head), "anchor": text or None},
        actor=actor,
        request=request,
    )
    chain = result.chain
    if chain.ok:
        messages.success(
            request,
            _("Chain intact: %(events)s events, head %(head)s.") % {"events": chain.events_checked, "head": chain.head},
        )
    else:
        messages.error(
            request,
            _("Chain broken at seq %(seq)s (%(problem)s): %(message)s")
            % {"seq": chain.bad_seq, "problem": chain.problem, "message": chain.message},
        )
    if anchor is not None:
        if result.anchor_ok:
            messages.success(request, _("Anchor %(seq)s is in the chain, unchanged.") % {"seq": anchor.seq})
        else:
            messages.error(
                request,
                _("Anchor %(seq)s does not hold: %(problem)s.") % {"seq": anchor.seq, "problem": result.anchor_problem},
            )
    return redirect("institution-audit", pk=pk)


@staff_required
def search(request):
    try:
        filters = AuditFilters.parse(request.GET)
    except Refusal as refusal:
        return _refused(request, "audit/search.html", refusal, {})
    events, next_before_seq = newest_first(filters.apply(AuditEvent.objects.all()), PAGE_SIZE)
    record_read("search", details=_read_details(filters, events), request=request)
    institutions = Institution.objects.in_bulk({_institution_id(e.institution) for e in events} - {None})
    for event in events:
        event.institution_name = _institution_name(institutions, event.institution)
    return render(request, "audit/search.html", _listing(request, filters, events, next_before_seq))


@staff_required
def export(request, fmt: str):
    """The filtered events in seq order, streamed: JSON Lines (export_audit's format) or CSV."""
    lines, content_type = EXPORTS[fmt]
    try:
        filters = AuditFilters.parse(request.GET)
    except Refusal as refusal:
        return _refused(request, "audit/search.html", refusal, {})
    record_read("export", details={"filters": filters.as_params(), "format": fmt}, request=request)
    events = filters.apply(AuditEvent.objects.order_by("seq")).iterator(chunk_size=2000)
    response = StreamingHttpResponse(lines(events), content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


def _listing(request, filters: AuditFilters, events, next_before_seq) -> dict:
    """The page's context: its events, and the query strings of the next and first pages and of the exports."""
    unpaged = filters.as_params(without=("before_seq",))
    for event in events:
        event.details_text = canonical_json(event.details)
    return {
        "filters": filters,
        "events": events,
        "next_query": urlencode({**unpaged, "before_seq": next_before_seq}) if next_before_seq else "",
        "first_query": urlencode(unpaged) if filters.before_seq else "",
        "export_query": urlencode(filters.as_params()),
        "actor_types": ActorType.choices,
    }


def _read_details(filters: AuditFilters, events) -> dict:
    return {"filters": filters.as_params(), "events": len(events)}


def _refused(request, template: str, refusal: Refusal, context: dict):
    messages.error(request, refusal.message)
    context = context | {"filters": AuditFilters(), "events": [], "actor_types": ActorType.choices}
    return render(request, template, context, status=status_of(refusal))


def _institution_name(institutions: dict, label: str) -> str:
    institution = institutions.get(_institution_id(label))
    return institution.legal_name if institution else label


def _institution_id(label: str) -> int | None:
    """An event's institution label as an institution's id, if it can be one (labels are free text)."""
    return int(label) if label.isascii() and label.isdigit() and len(label) <= 18 else None
