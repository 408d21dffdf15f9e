"""Queries whose process died between `query.start` and `query.run`: found, and their end put on record.

A query records `query.start` when it is charged and `query.run` when it ends, both carrying its
`query_id`. A process killed in between (SIGKILL, out of memory, a lost host) records no `query.run`.
Its slots are short leases that the process renewed while the query ran (quotas.keeper), and the
institution's is named after the query, so once that lease is gone and still no `query.run` exists, the
query can no longer end on its own: `record_interrupted_queries` records its `query.run` with outcome
`interrupted` (code `interrupted`), as its own process would have, same actor and target.

Runs every minute from beat (query.tasks); a query that ended normally between the sweep's reads is
checked for again just before its event is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.metering import query_alive
from audit.models import AuditEvent
from audit.service import record

INTERRUPTED = "interrupted"
LOOKBACK = timedelta(hours=1)  # starts older than this were swept by earlier runs (every minute)
_KEPT_DETAILS = ("client_id", "user", "sql", "sql_sha256", "format", "datasets")


def record_interrupted_queries(*, now: datetime | None = None) -> list[str]:
    """Record `query.run` (outcome `interrupted`) for each query started in the last hour whose process died
    before it ended; returns their query ids."""
    now = now or timezone.now()
    # A start younger than one lease lifetime may belong to a query whose process has not renewed yet.
    settled = now - timedelta(seconds=settings.QUERY_SLOT_LEASE_SECONDS)
    starts = AuditEvent.objects.filter(action="query.start", timestamp__gte=now - LOOKBACK, timestamp__lt=settled)
    ended = {
        event.details.get("query_id")
        for event in AuditEvent.objects.filter(action="query.run", timestamp__gte=now - LOOKBACK).only("details")
    }
    recorded = []
    for start in starts.order_by("seq"):
        query_id = start.details.get("query_id")
        if not query_id or query_id in ended or not start.institution.isdigit():
            continue  # before query ids existed, ended, or not a partner's query
        if query_alive(int(start.institution), query_id):
            continue
        with transaction.atomic():
            if _has_ended(query_id):  # it ended after `ended` was read
                continue
            record(
                "query.run",
                outcome=INTERRUPTED,
                actor_type=start.actor_type,
                actor_id=start.actor_id,
                institution=start.institution,
                target=start.target,
                details={
                    **{key: start.details[key] for key in _KEPT_DETAILS if key in start.details},
                    "query_id": query_id,
                    "code": INTERRUPTED,
                    "started_seq": start.seq,
                    "reason": "the process running it stopped before it ended",
                },
                ip=start.ip,
                request_id=start.request_id,
            )
        recorded.append(query_id)
    return recorded


def _has_ended(query_id: str) -> bool:
    # Canonical JSON text: the key and the value as they are stored.
    return AuditEvent.objects.filter(action="query.run", details__contains=f'"query_id":"{query_id}"').exists()
