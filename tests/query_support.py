"""Personas and constants of the query gateway tests (fixtures: tests/query/conftest.py).

alice works for a bank, bob for a fund company; each institution has its own re-keying key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.ipc as ipc

from datasets.query.rekey import derive_partner_key

MASTER_KEY = b"test master key for re-keying, 32b"
K = 3  # min_entities of the aggregate dataset `cards`


@dataclass(frozen=True)
class Partner:
    name: str
    key: bytes


ALICE = Partner("alice", derive_partner_key(MASTER_KEY, "alice-bank"))
BOB = Partner("bob", derive_partner_key(MASTER_KEY, "bob-fund"))


def arrow_stream_batches(data: bytes) -> list:
    """Every batch of an Arrow IPC stream with its custom metadata (the last carries the truncation flag)."""
    reader = ipc.open_stream(data)
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch_with_custom_metadata())
        except StopIteration:
            return batches
