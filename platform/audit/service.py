"""The one audit writer, and the chain check: `from audit.service import record, audited, verify_chain`.

Every audit event in Vitamin is written by `record` (or `audited`, which calls
it). Nothing else inserts into the audit table.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, router, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import chain_lock
from audit.chain import GENESIS_HASH, ChainHead, ChainVerification, canonical_json, compute_hash, verify_chain
from audit.models import ActorType, AuditEvent, Outcome
from vitamin.client_ip import client_ip
from vitamin.request_context import get_request_id

__all__ = ["ChainHead", "ChainVerification", "audited", "record", "verify_chain", "verify_log"]

# Fields that may carry what a caller sent (a table name in a target, a client id, a request id):
# bounded by truncation, never refused. The others are the code's own words and must fit.
BOUNDED_FIELDS = ("actor_id", "institution", "target", "request_id")
# The longest string kept whole anywhere in `details` (keys too): a whole query (100,000 characters) fits.
MAX_DETAIL_STRING_CHARS = 100_000
# The key of `details` that lists what was truncated: {field or details path: {"chars": n, "sha256": hex}}.
TRUNCATED_KEY = "truncated_fields"


def record(
    action: str,
    *,
    outcome: str = Outcome.SUCCESS,
    actor_type: str | None = None,
    actor_id: str = "",
    institution: str = "",
    target: str = "",
    details: dict[str, Any] | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    request: HttpRequest | None = None,
    savepoint: bool = True,
) -> AuditEvent:
    """Append one event to the audit chain and return it.

    `request`, when given, fills what the caller left out: `ip` from
    `vitamin.client_ip` (REMOTE_ADDR, or X-Forwarded-For as far as trusted proxies
    vouch for it), `request_id` from request.request_id, and
    the actor: an OAuth client (request.auth_client: actor_type "client",
    actor_id its client_id, institution its institution_id) or else an
    authenticated user (actor_type "user", actor_id the username). Without an
    actor the event is a "system" one. `request_id` falls back to the id of the
    request or task being handled (vitamin.request_context).

    Transaction contract (fail closed): the append runs in `transaction.atomic()`.
    Called inside the caller's own atomic block it joins that transaction, so if
    the audit write fails the exception propagates and the caller's changes roll
    back with it, and if the caller's transaction rolls back the event goes too.
    An action that must not happen unaudited therefore wraps its writes and this
    call in one atomic block (or uses `audited`). Called outside any transaction
    it commits on its own. Inside one, its writes are a savepoint of their own: a
    caller that catches the failure (to give back a charge, say) can go on using its
    transaction, on PostgreSQL too, without a savepoint around the call. A caller whose
    transaction must end when the write fails passes `savepoint=False` (two statements fewer).

    Concurrency: appends are serialized (PostgreSQL: a transaction-scoped advisory
    lock, taken with the head's read in one round trip, `audit.chain_lock`; SQLite: the write
    lock that BEGIN IMMEDIATE takes), and unique
    constraints on seq and prev_hash stop a forked chain even if that failed. The
    lock is held until the surrounding transaction ends, so call this late in a
    long transaction.

    Bounded fields (never refused for size): a string longer than its column in `actor_id`,
    `institution`, `target` or `request_id`, and any string (or key) in `details` longer than
    MAX_DETAIL_STRING_CHARS, is stored truncated (ending in "…"), and
    `details["truncated_fields"]` keeps, per field ("target", "details.sql", "details.a.0"), the
    original's length in characters and its SHA-256 (hex, of the UTF-8 text): a refusal of an
    absurd input stays on record, and the original can still be matched against it.

    Raises ValueError or TypeError for bad input (details must be JSON, ip an IP
    address, action and outcome within their lengths) and database errors unchanged.
    """
    if request is not None:
        ip = ip or client_ip(request) or None
        request_id = request_id or getattr(request, "request_id", None)
        if actor_type is None:
            actor_type, request_actor_id, request_institution = _actor_of(request)
            actor_id = actor_id or request_actor_id
            institution = institution or request_institution
    event = AuditEvent(
        actor_type=str(actor_type or ActorType.SYSTEM),
        actor_id=str(actor_id),
        institution=str(institution),
        action=action,
        target=str(target),
        outcome=outcome,
        # Round-trip through the canonical text so the instance holds exactly what is stored.
        details=json.loads(canonical_json(details if details is not None else {})),
        ip=_normalized_ip(ip) if ip else "",
        request_id=request_id or get_request_id() or "",
    )
    _bound_fields(event)
    _check_fields(event)

    using = router.db_for_write(AuditEvent)
    with transaction.atomic(using=using, savepoint=savepoint):
        head_seq, head_hash = _locked_chain_head(using)
        event.seq = head_seq + 1
        event.prev_hash = head_hash
        # Taken under the lock, so timestamps never go backwards along the chain.
        event.timestamp = timezone.now()
        event.hash = compute_hash(event.to_record())
        _insert(event, using)
    return event


@contextmanager
def audited(action: str, **record_arguments: Any) -> Iterator[dict[str, Any]]:
    """Run a block and record its audit event in one transaction: both happen or neither.

        with audited("subscription.approve", request=request, target=f"subscription:{pk}") as event:
            subscription.approve()
            event["details"] = {"plan": subscription.plan}

    The block may set or change any of `record`'s keyword arguments in the yielded
    dict. If the block raises, nothing is recorded and its writes roll back; if
    the audit write fails, the block's writes roll back and the error propagates.
    """
    event = dict(record_arguments)
    with transaction.atomic(using=router.db_for_write(AuditEvent)):
        yield event
        record(action, **event)


def verify_log(*, expect_head: ChainHead | None = None, chunk_size: int = 2000) -> ChainVerification:
    """Verify the whole stored chain in seq order, streaming `chunk_size` rows at a time."""
    events = AuditEvent.objects.order_by("seq").iterator(chunk_size=chunk_size)
    return verify_chain(events, expect_head=expect_head)


def _actor_of(request: HttpRequest) -> tuple[str, str, str]:
    """(actor_type, actor_id, institution) of whoever made the request."""
    client = getattr(request, "auth_client", None)
    if client is not None:
        institution_id = getattr(client, "institution_id", None)
        return ActorType.CLIENT, str(client.client_id), "" if institution_id is None else str(institution_id)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return ActorType.USER, user.get_username(), ""
    return ActorType.SYSTEM, "", ""


def _bound_fields(event: AuditEvent) -> None:
    """Truncate overlong strings in place (BOUNDED_FIELDS and `details`), noting each original's length and hash."""
    truncated: dict[str, dict[str, Any]] = {}
    for name, limit in _bounded_limits():
        setattr(event, name, _bounded(getattr(event, name), limit, name, truncated))
    event.details = _bounded_json(event.details, "details", truncated)
    if truncated:
        event.details = {**event.details, TRUNCATED_KEY: truncated}


def _bounded_json(value: Any, path: str, truncated: dict[str, dict[str, Any]]) -> Any:
    if isinstance(value, str):
        return _bounded(value, MAX_DETAIL_STRING_CHARS, path, truncated)
    if isinstance(value, list):
        return [_bounded_json(item, f"{path}.{index}", truncated) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {
            _bounded(key, MAX_DETAIL_STRING_CHARS, f"{path}.<key>", truncated): _bounded_json(
                item, f"{path}.{key[:100]}", truncated
            )
            for key, item in value.items()
        }
    return value


def _bounded(text: str, limit: int, path: str, truncated: dict[str, dict[str, Any]]) -> str:
    if len(text) <= limit:
        return text
    truncated[path] = {"chars": len(text), "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}
    return text[: limit - 1] + "…"


@functools.cache
def _bounded_limits() -> tuple[tuple[str, int], ...]:
    return tuple((name, AuditEvent._meta.get_field(name).max_length) for name in BOUNDED_FIELDS)


@functools.cache
def _sized_fields() -> tuple[tuple[str, str, int], ...]:
    return tuple(
        (field.attname, field.name, field.max_length)
        for field in AuditEvent._meta.concrete_fields
        if field.max_length is not None
    )


_ACTOR_TYPES = frozenset(ActorType.values)


def _check_fields(event: AuditEvent) -> None:
    """Refuse what the database would truncate or reject, the same way on SQLite and PostgreSQL."""
    if not event.action:
        raise ValueError("an audit event needs an action")
    if event.actor_type not in _ACTOR_TYPES:
        raise ValueError(f"actor_type must be one of {', '.join(ActorType.values)}, not {event.actor_type!r}")
    for attname, name, max_length in _sized_fields():
        value = getattr(event, attname)
        if isinstance(value, str) and len(value) > max_length:
            raise ValueError(f"audit {name} is longer than {max_length} characters")


@functools.lru_cache(maxsize=4096)  # a pure function of the text; the same clients call again and again
def _normalized_ip(text: str) -> str:
    """One spelling per address; an IPv4 client seen through a dual-stack socket is stored as IPv4."""
    address = ipaddress.ip_address(text)
    return str(getattr(address, "ipv4_mapped", None) or address)


def _locked_chain_head(using: str) -> tuple[int, str]:
    """Take the chain's lock, then read the last event's seq and hash (0 and the genesis hash before the
    first) under it: one round trip (`chain_lock`). Hand-written because every query does it twice."""
    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(chain_lock.LOCKED_HEAD_SQL, [chain_lock.CHAIN_LOCK_KEY])
        else:
            cursor.execute(chain_lock.HEAD_SQL)
        head = cursor.fetchone()
    return (int(head[0]), head[1]) if head is not None else (0, GENESIS_HASH)


def _insert(event: AuditEvent, using: str) -> None:
    """`event.save(force_insert=True)`, as one hand-written INSERT of every column: each value prepared by its
    field as the ORM's insert prepares it, without compiling the statement on every append (no signal
    handler listens to audit events; the database's append-only triggers see this INSERT like any other)."""
    connection = connections[using]
    fields = AuditEvent._meta.concrete_fields
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = [field.get_db_prep_save(field.pre_save(event, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})", values)  # noqa: S608
    event._state.adding = False
    event._state.db = using
