"""Personas and constants of the query gateway tests (fixtures: tests/query/conftest.py).

alice works for a bank, bob for a fund company; each institution has its own re-keying key.
"""

from __future__ import annotations

from dataclasses import dataclass

from query.rekey import derive_partner_key

MASTER_KEY = b"test master key for re-keying, 32b"
K = 3  # min_entities of the aggregate dataset `cards`


@dataclass(frozen=True)
class Partner:
    name: str
    key: bytes


ALICE = Partner("alice", derive_partner_key(MASTER_KEY, "alice-bank"))
BOB = Partner("bob", derive_partner_key(MASTER_KEY, "bob-fund"))
