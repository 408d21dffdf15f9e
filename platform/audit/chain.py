"""The audit hash chain: canonical serialization, event hashes, and chain verification.

Plain Python on purpose (no database access), so the same code checks the live
table, an export file, or records an API hands out.

An event's hash is SHA-256 over the canonical serialization of every other
field: a JSON object with sorted keys, no whitespace, non-ASCII text kept as
UTF-8. The timestamp is ISO-8601 UTC with microseconds ("2025-01-31T08:00:00.000000Z").
Each event stores the previous event's hash in `prev_hash` (64 zeros for seq 1),
so editing, deleting, inserting or reordering an event breaks the chain at that
point.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

# The fields covered by the hash, i.e. every stored field but `hash` itself.
# Changing this set (or the serialization) breaks every existing chain.
HASHED_FIELDS = (
    "seq",
    "timestamp",
    "actor_type",
    "actor_id",
    "institution",
    "action",
    "target",
    "outcome",
    "details",
    "ip",
    "request_id",
    "prev_hash",
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, compact, NaN/Infinity refused (not valid JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_timestamp(value: datetime) -> str:
    """The one textual form of an event time: UTC, microseconds, trailing Z."""
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical serialization of the hashed fields of `record`."""
    hashed = {name: record[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(hashed).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    """An anchor: the seq and hash of an event, recorded by an auditor to detect later truncation."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        """Parse "SEQ:HASH" as printed by verify_audit."""
        match = re.fullmatch(r"([1-9][0-9]*):([0-9a-f]{64})", text.strip().lower())
        if match is None:
            raise ValueError(f"expected SEQ:HASH (a seq from 1, a colon, 64 hex digits), got {text!r}")
        return cls(int(match[1]), match[2])

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class ChainVerification:
    """What verify_chain found. When `ok` is false, `bad_seq` is the first sequence number in trouble."""

    ok: bool
    events_checked: int
    head_seq: int  # last good event's seq (0 for an empty log)
    head_hash: str  # last good event's hash (GENESIS_HASH for an empty log)
    bad_seq: int | None = None
    # A stable code: hash_mismatch, seq_gap, seq_out_of_order, prev_hash_mismatch, truncated,
    # anchor_mismatch, anchor_not_covered.
    problem: str | None = None
    message: str = ""

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.head_seq, self.head_hash)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "head": str(self.head)}


def verify_chain(
    events: Iterable[Any], *, expect_head: ChainHead | None = None, partial: bool = False
) -> ChainVerification:
    """Check a sequence of events, in seq order, and stop at the first problem.

    `events` are AuditEvent instances or their records (mappings as produced by
    `AuditEvent.to_record()` and by export_audit). The whole log must start at
    seq 1; `partial=True` accepts a slice (an export with --since) whose first
    event's seq and prev_hash can only be taken as given.
    `expect_head` is an anchor recorded earlier: the chain must still contain that
    event unchanged, which is the only way to notice deleted newest events.

    Streams: holds one event at a time, so it runs in constant memory.
    """
    checked = 0
    head_seq, head_hash = 0, GENESIS_HASH
    anchor_seen = False

    def broken(bad_seq: int, problem: str, message: str) -> ChainVerification:
        return ChainVerification(False, checked, head_seq, head_hash, bad_seq, problem, message)

    for event in events:
        record = event.to_record() if hasattr(event, "to_record") else event
        seq = record["seq"]
        if compute_hash(record) != record["hash"]:
            return broken(seq, "hash_mismatch", f"seq {seq}: stored hash does not match its content (event edited)")
        if checked == 0 and partial and seq > 1:
            # A slice of the log: its first event's link can only be checked against an earlier export.
            head_seq, head_hash = seq - 1, record["prev_hash"]
        expected_seq = head_seq + 1
        if seq > expected_seq:
            missing = str(expected_seq) if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            return broken(expected_seq, "seq_gap", f"seq {missing} missing before seq {seq} (event deleted)")
        if seq < expected_seq:
            return broken(seq, "seq_out_of_order", f"seq {seq} found where seq {expected_seq} was expected (reordered)")
        if record["prev_hash"] != head_hash:
            return broken(
                seq,
                "prev_hash_mismatch",
                f"seq {seq}: prev_hash does not match the hash of seq {head_seq} (event inserted or reordered)",
            )
        if expect_head is not None and seq == expect_head.seq:
            if record["hash"] != expect_head.hash:
                return broken(seq, "anchor_mismatch", f"seq {seq}: hash differs from the anchor {expect_head}")
            anchor_seen = True
        checked += 1
        head_seq, head_hash = seq, record["hash"]

    if expect_head is not None and not anchor_seen:
        if expect_head.seq <= head_seq:  # only possible for a slice that starts after the anchor
            return broken(expect_head.seq, "anchor_not_covered", f"seq {expect_head.seq} is not in the checked events")
        return broken(
            head_seq + 1,
            "truncated",
            f"the log ends at seq {head_seq} but the anchor names seq {expect_head.seq} (newest events deleted)",
        )
    return ChainVerification(True, checked, head_seq, head_hash, message=f"{checked} events intact, head {head_seq}")
