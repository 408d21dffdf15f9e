"""Helpers for the audit tests: build a chain, and tamper with it the way someone with database access could."""

from __future__ import annotations

import pytest
from django.db import connection

from audit import triggers
from audit.chain import compute_hash
from audit.models import AuditEvent
from audit.service import record


class Tamperer:
    """Raw SQL on the audit table with the append-only triggers lifted for the statement."""

    def execute(self, sql: str, params: list | None = None) -> None:
        with triggers.lifted(connection), connection.cursor() as cursor:
            cursor.execute(sql, params)

    def rehash(self, seq: int) -> None:
        """Recompute a tampered event's own hash, as a careful forger would, so only the links can betray it."""
        event = AuditEvent.objects.get(seq=seq)
        self.execute("UPDATE audit_auditevent SET hash = %s WHERE seq = %s", [compute_hash(event.to_record()), seq])


@pytest.fixture
def tamper() -> Tamperer:
    return Tamperer()


@pytest.fixture
def make_chain():
    """make_chain(n) appends n varied events through the one writer and returns them."""

    def make(count: int) -> list[AuditEvent]:
        return [
            record(
                "query.run" if number % 2 else "token.issue",
                actor_type="client" if number % 3 else "user",
                actor_id=f"actor-{number % 4}",
                institution=f"inst-{number % 2}",
                target=f"dataset:{number}",
                outcome="success" if number % 5 else "denied",
                details={"number": number, "rows": number * 10, "note": f"第{number}次"},
                ip="10.0.0.1",
                request_id=f"request-{number:04d}",
            )
            for number in range(1, count + 1)
        ]

    return make
