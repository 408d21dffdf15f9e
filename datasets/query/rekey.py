"""Per-partner re-keying of identifying columns: HMAC-SHA256 under a key that belongs to one institution.

Identifier and entity columns are published as pseudonyms (datasets.anonymize).
Served as they are, two partners could join their results on them; so every
value a partner can see passes through one more HMAC, keyed per institution:

    partner key = HKDF-SHA256(master secret, info="vitamin/query-rekey/{institution}", 32 bytes)
    shown value = hex(HMAC-SHA256(partner key, UTF-8 text of the pseudonym))[:32]

The same institution always gets the same values (its results join with each
other, across queries and datasets); two institutions get unrelated values.

The HMAC is computed in DuckDB with `sha256()` over BLOBs, as the build does
(`datasets.anonymize`): the pads are written into the view definition as hex
constants, because a view cannot take query parameters. The view lives only in
the connection that serves one query.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from datasets.anonymize import PSEUDONYM_HEX_CHARS, PseudonymKey

MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64  # one SHA-256 block: longer keys would have to be hashed first


def derive_partner_key(master_key: bytes, institution: str) -> bytes:
    """The re-keying key of one institution (`institution`: a stable id, e.g. its primary key or slug)."""
    if len(master_key) < MIN_KEY_BYTES:
        raise ValueError(f"the master key must be at least {MIN_KEY_BYTES} bytes")
    if not institution:
        raise ValueError("an institution id is required")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"vitamin/query-rekey/{institution}".encode())
    return hkdf.derive(master_key)


def check_partner_key(key: bytes) -> None:
    if not isinstance(key, bytes) or not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(f"a partner key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")


def rekey_sql(key: bytes, value_sql: str) -> str:
    """SQL for the re-keyed value of `value_sql` (any type, hashed as its VARCHAR text); NULL stays NULL."""
    check_partner_key(key)
    pads = PseudonymKey(key).sql_parameters()
    ipad, opad = pads["pseudonym_ipad"].hex(), pads["pseudonym_opad"].hex()
    inner = f"unhex(sha256(unhex('{ipad}') || encode(CAST({value_sql} AS VARCHAR))))"
    return f"left(sha256(unhex('{opad}') || {inner}), {PSEUDONYM_HEX_CHARS})"


def rekey(key: bytes, value: str) -> str:
    """The same function in Python, for tests and for callers that re-key a single value."""
    check_partner_key(key)
    return PseudonymKey(key).pseudonym(value)


def key_fingerprint(key: bytes) -> str:
    """Identifies a key without revealing it (to know whether a connection's views were built with it)."""
    return hashlib.sha256(b"vitamin-rekey-fingerprint:" + key).hexdigest()[:16]
