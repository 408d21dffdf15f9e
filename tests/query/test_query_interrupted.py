"""A query whose process died between `query.start` and `query.run` gets its `query.run` (outcome `interrupted`)
from the sweep (query.interrupted), once its slot is no longer held; a live or finished query never does.

Here the process's death is its slot lease being gone (as when a killed process stops renewing it);
tests/vitamin/test_embedded_faults.py kills a real gunicorn worker mid-query.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from access.metering import hold_query_slots, release_query_slots
from audit.chain import verify_chain
from audit.models import AuditEvent
from audit.service import record
from query.interrupted import record_interrupted_queries
from quotas.keeper import keeper

pytestmark = pytest.mark.django_db

INSTITUTION = 41


def started_query(**details) -> tuple[str, list]:
    """A query as `run_query` leaves it running: its slots held (renewed by this process), `query.start` recorded."""
    query_id = uuid.uuid4().hex
    leases = hold_query_slots(INSTITUTION, [], holder=query_id)
    record(
        "query.start",
        actor_type="client",
        actor_id="fund-client",
        institution=str(INSTITUTION),
        target="dataset:cards",
        details={"client_id": "fund-client", "sql": "SELECT 1", "sql_sha256": "ab", "query_id": query_id, **details},
    )
    return query_id, leases


def interrupted_runs() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="query.run", outcome="interrupted"))


def later() -> datetime:
    return timezone.now() + timedelta(seconds=30)  # past the lease lifetime a fresh start is given


def test_a_query_whose_slot_is_gone_without_a_run_is_recorded_interrupted_once(settings):
    dead, leases = started_query()
    release_query_slots(leases)  # what a dead process's leases come to once they lapse unrenewed
    alive, alive_leases = started_query()
    finished, finished_leases = started_query()
    record("query.run", institution=str(INSTITUTION), details={"query_id": finished})
    release_query_slots(finished_leases)

    assert record_interrupted_queries(now=later()) == [dead]

    [event] = interrupted_runs()
    start = AuditEvent.objects.get(action="query.start", details__contains=dead)
    assert event.details["query_id"] == dead and event.details["code"] == "interrupted"
    assert event.details["started_seq"] == start.seq and event.details["sql"] == "SELECT 1"
    assert (event.actor_type, event.actor_id, event.institution, event.target) == (
        "client",
        "fund-client",
        str(INSTITUTION),
        "dataset:cards",
    )
    assert record_interrupted_queries(now=later()) == []  # on record: never twice
    assert verify_chain(AuditEvent.objects.order_by("seq")).ok
    release_query_slots(alive_leases)


def test_a_fresh_start_is_left_until_its_lease_could_have_lapsed():
    _, leases = started_query()
    release_query_slots(leases)
    assert record_interrupted_queries() == []  # younger than one lease lifetime: it may not have renewed yet
    assert interrupted_runs() == []


def test_a_live_query_keeps_its_slot_renewed_and_is_not_interrupted():
    query_id, leases = started_query()
    assert {lease.lease_id for lease in keeper().held()} >= {lease.lease_id for lease in leases}
    assert record_interrupted_queries(now=later()) == []
    release_query_slots(leases)
    assert not {lease.lease_id for lease in keeper().held()} & {lease.lease_id for lease in leases}
