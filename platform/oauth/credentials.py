"""Generating, hashing and comparing secrets: client secrets, tokens, codes.

Every secret is 256 random bits, so a single SHA-256 is enough to store it: there
is nothing to brute-force, and lookups by hash stay indexed. Only the hash is kept;
the value is shown once. The prefixes make leaked values easy to recognise (and
to find with secret scanners).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CLIENT_ID_PREFIX = "vtc_"
CLIENT_SECRET_PREFIX = "vcs_"  # noqa: S105 - a prefix, not a secret
ACCESS_TOKEN_PREFIX = "vat_"  # noqa: S105 - a prefix, not a secret
REFRESH_TOKEN_PREFIX = "vrt_"  # noqa: S105 - a prefix, not a secret
REGISTRATION_TOKEN_PREFIX = "vit_"  # noqa: S105 - a prefix, not a secret
_RANDOM_BYTES = 32


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(12)


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(_RANDOM_BYTES)


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def matches(value: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash (empty hash never matches)."""
    return bool(stored_hash) and hmac.compare_digest(hash_secret(value), stored_hash)
