"""The partner's own audit trail over the API (scope audit:read): its events, and the chain's verification.

A partner sees only events whose `institution` is its own id. Each event comes as its full
record (`AuditEvent.to_record()`: every hashed field, `hash` and `prev_hash`), so the partner
recomputes every hash itself (docs/audit.md has the recipe) and keeps any of them as an anchor
for `/audit/verify?anchor=SEQ:HASH` later. Reads are throttled and recorded (`audit.reads`).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from audit import verification
from audit.chain import ChainHead
from audit.models import ActorType
from audit.reads import record_read, take_read, trail_of
from audit.search import PARTNER_FILTERS, AuditFilters, invalid, newest_first, refuse_unknown
from vitamin.api import PartnerView

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class AuditRecordSerializer(serializers.Serializer):
    """For the schema: an event exactly as hashed, plus its hash."""

    seq = serializers.IntegerField()
    timestamp = serializers.CharField(help_text="UTC with microseconds: 2025-03-01T08:30:00.123456Z.")
    actor_type = serializers.ChoiceField(choices=ActorType.values)
    actor_id = serializers.CharField()
    institution = serializers.CharField()
    action = serializers.CharField()
    target = serializers.CharField()
    outcome = serializers.CharField()
    details = serializers.DictField()
    ip = serializers.CharField()
    request_id = serializers.CharField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField(help_text="SHA-256 (hex) of the canonical JSON of every other field.")


class AuditPageSerializer(serializers.Serializer):
    results = AuditRecordSerializer(many=True)
    next_before_seq = serializers.IntegerField(allow_null=True, help_text="The cursor of the next (older) page.")
    next = serializers.CharField(allow_null=True, help_text="The next page's URL, or null on the last page.")


class AuditVerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="The chain is intact (and the anchor's event unchanged, if one was given).")
    head = serializers.CharField(help_text="SEQ:HASH of the newest event verified.")
    events_checked = serializers.IntegerField()
    problem = serializers.CharField(allow_null=True)
    bad_seq = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()
    fully_verified_at = serializers.DateTimeField()
    anchor = serializers.CharField(allow_null=True)
    anchor_ok = serializers.BooleanField(allow_null=True)
    anchor_problem = serializers.CharField(allow_null=True)


_ERROR = OpenApiResponse(description='{"error": {"code", "message", "request_id"}}')
_FILTER_PARAMETERS = [
    OpenApiParameter("action", str, description="An action (query.run) or a prefix ending in a dot (query.)."),
    OpenApiParameter("outcome", str, description="success, denied, failure, error, ..."),
    OpenApiParameter("actor_type", str, enum=ActorType.values),
    OpenApiParameter("actor_id", str, description="A username or OAuth client id."),
    OpenApiParameter("dataset", str, description="A dataset slug: events whose target names dataset:SLUG."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="At or after (ISO-8601; UTC without an offset)."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Before (ISO-8601; UTC without an offset)."),
    OpenApiParameter("after_seq", int, description="Only events with a higher seq."),
    OpenApiParameter("before_seq", int, description="Only events with a lower seq: the paging cursor."),
    OpenApiParameter(
        "page_size", int, description=f"Events per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})."
    ),
]


class AuditEvents(PartnerView):
    required_scope = "audit:read"

    @extend_schema(
        operation_id="list_audit_events",
        summary="My institution's audit events, newest first",
        description="Page with `before_seq` = the previous page's `next_before_seq`: events appended meanwhile "
        "never shift a page. Each event is its full record, so every hash can be recomputed.",
        parameters=_FILTER_PARAMETERS,
        responses={200: AuditPageSerializer, 400: _ERROR, 401: _ERROR, 403: _ERROR, 429: _ERROR},
    )
    def get(self, request):
        query = request.query_params
        refuse_unknown(query, (*PARTNER_FILTERS, "page_size"))
        filters = AuditFilters.parse(query, names=PARTNER_FILTERS)
        page_size = _page_size(query.get("page_size"))
        institution_id = request.auth_client.institution_id
        take_read(institution_id, view="events", request=request)
        page, next_before_seq = newest_first(filters.apply(trail_of(institution_id)), page_size)
        record_read("events", details={"filters": filters.as_params(), "events": len(page)}, request=request)
        next_url = None
        if next_before_seq is not None:
            next_query = query.copy()
            next_query["before_seq"] = str(next_before_seq)
            next_url = request.build_absolute_uri(f"{request.path}?{next_query.urlencode()}")
        return Response(
            {"results": [event.to_record() for event in page], "next_before_seq": next_before_seq, "next": next_url}
        )


class VerifyAuditChain(PartnerView):
    required_scope = "audit:read"

    @extend_schema(
        operation_id="verify_audit_chain",
        summary="Verify the audit chain, and that an event I kept is still in it unchanged",
        description="`ok` false names the first bad seq and why (`problem`), never an event's content. "
        "With `anchor=SEQ:HASH` (any event's seq and hash, e.g. one of my own events) `anchor_ok` says whether "
        "that event is still stored unchanged. The whole chain is re-verified at most every "
        "VITAMIN_AUDIT_FULL_VERIFY_SECONDS; in between, the events appended since the last verification are.",
        parameters=[OpenApiParameter("anchor", str, description="SEQ:HASH, e.g. 42:3f1e… (64 hex digits).")],
        responses={200: AuditVerificationSerializer, 400: _ERROR, 401: _ERROR, 403: _ERROR, 429: _ERROR},
    )
    def get(self, request):
        query = request.query_params
        refuse_unknown(query, ("anchor",))
        anchor = _anchor(query.get("anchor"))
        take_read(request.auth_client.institution_id, view="verify", request=request)
        result = verification.verify(anchor)
        record_read(
            "verify",
            details={
                "ok": result.ok,
                "head": str(result.chain.head),
                "anchor": None if anchor is None else str(anchor),
            },
            request=request,
        )
        return Response(result.as_dict())


def _page_size(text: str | None) -> int:
    if not text:
        return DEFAULT_PAGE_SIZE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise invalid(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}.")
    return int(text)


def _anchor(text: str | None) -> ChainHead | None:
    if not text:
        return None
    try:
        return ChainHead.parse(text)
    except ValueError as exc:
        raise invalid(f"anchor: {exc}") from None
