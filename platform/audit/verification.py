"""Chain verification on request (the partner API and the portal), at a bounded cost, and anchor checks.

Verifying the whole chain reads every event: O(n) per call, too much to offer on every request.
So each process keeps the head it last verified. A call checks only what was appended since,
starting at that head event, which must still be there unchanged (so deleting the newest events
is noticed); the whole chain is verified again when the last full verification is older than
VITAMIN_AUDIT_FULL_VERIFY_SECONDS, or when the short check fails (then the full one names the
first bad event). The remembered head is also the full verification's anchor: once a process has
verified an event, a chain without it (its newest events deleted, or rewritten from there on)
is reported broken until the process restarts or `forget()` is called (after a restore from a
backup, say). One lock per process: concurrent calls wait for one verification instead of each
running their own.

The cost of that bound: an event older than the remembered head that is edited afterwards is
found by the next full verification, at most VITAMIN_AUDIT_FULL_VERIFY_SECONDS later. An anchor
(`SEQ:HASH`) is always checked against the stored event itself, its content hashed again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from audit.chain import ChainHead, ChainVerification, compute_hash, verify_chain
from audit.models import AuditEvent
from audit.service import verify_log


@dataclass(frozen=True)
class _Verified:
    head: ChainHead
    events_checked: int
    full_at_monotonic: float
    full_at: datetime


# The largest seq a database column can hold (BIGINT): an anchor beyond it names no event that can exist.
MAX_SEQ = 2**63 - 1

_lock = threading.Lock()
_verified: _Verified | None = None


@dataclass(frozen=True)
class Verification:
    """The chain's state, and the anchor's when one was given (`anchor_ok` None without one)."""

    chain: ChainVerification
    fully_verified_at: datetime
    anchor: ChainHead | None = None
    anchor_ok: bool | None = None
    anchor_problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.anchor_ok is not False

    def as_dict(self) -> dict:
        """What a partner is told: no field of any event but seqs and hashes."""
        return {
            "ok": self.ok,
            "head": str(self.chain.head),
            "events_checked": self.chain.events_checked,
            "problem": self.chain.problem,
            "bad_seq": self.chain.bad_seq,
            "message": self.chain.message,
            "fully_verified_at": self.fully_verified_at.isoformat(),
            "anchor": None if self.anchor is None else str(self.anchor),
            "anchor_ok": self.anchor_ok,
            "anchor_problem": self.anchor_problem,
        }


def verify(anchor: ChainHead | None = None) -> Verification:
    """Verify the stored chain (bounded as the module says) and, with `anchor`, that its event is unchanged."""
    chain, fully_verified_at = _verify_chain()
    if anchor is None:
        return Verification(chain, fully_verified_at)
    problem = _anchor_problem(anchor, chain)
    return Verification(chain, fully_verified_at, anchor, problem is None, problem)


def forget() -> None:
    """Drop the remembered head, so the next call verifies the whole chain (tests; after a restore)."""
    global _verified
    with _lock:
        _verified = None


def _verify_chain() -> tuple[ChainVerification, datetime]:
    global _verified
    with _lock:
        known = _verified
        if known is not None and time.monotonic() - known.full_at_monotonic < settings.AUDIT_FULL_VERIFY_SECONDS:
            since_known = AuditEvent.objects.filter(seq__gte=known.head.seq).order_by("seq").iterator(chunk_size=2000)
            result = verify_chain(since_known, expect_head=known.head, partial=True)
            if result.ok:
                # The remembered head was counted before: it is the first event checked again.
                result = replace(result, events_checked=known.events_checked + result.events_checked - 1)
                _verified = replace(known, head=result.head, events_checked=result.events_checked)
                return result, known.full_at
        full_at_monotonic, full_at = time.monotonic(), timezone.now()
        # The head verified before is this process's anchor: a chain that no longer holds it was cut or rewritten.
        result = verify_log(expect_head=known.head if known is not None else None)
        if result.ok:
            _verified = _Verified(result.head, result.events_checked, full_at_monotonic, full_at)
        return result, full_at


def _anchor_problem(anchor: ChainHead, chain: ChainVerification) -> str | None:
    """None when the anchor's event is stored unchanged within the verified chain, else a problem code."""
    if (chain.ok and anchor.seq > chain.head_seq) or anchor.seq > MAX_SEQ:
        return "truncated"
    event = AuditEvent.objects.filter(seq=anchor.seq).first()
    if event is None:
        return "missing"  # a gap where it was: the chain is broken there too
    if event.hash != anchor.hash or compute_hash(event.to_record()) != anchor.hash:
        return "anchor_mismatch"
    if not chain.ok and chain.bad_seq is not None and anchor.seq >= chain.bad_seq:
        return "not_verifiable"  # stored unchanged, but the chain breaks before it: its place cannot be vouched for
    return None
