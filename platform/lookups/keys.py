"""The keys lookups derive from the pseudonym master secret (VITAMIN_PSEUDONYM_KEY), one purpose each.

- `pseudonym_key(slug, release)`: the dataset's own pseudonym key (datasets.anonymize), to match
  what a partner sends with what the build wrote;
- `subject(institution_id, pseudonym)`: a customer as one institution's cut-off checks record it,
  unrelated across institutions and not the dataset's pseudonym;
- `derived(purpose)`: the keys of lookups.replays (request hashes, answer encryption).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from datasets.anonymize import PseudonymKey


def _master() -> bytes:
    return settings.PSEUDONYM_MASTER_KEY.encode()


@functools.lru_cache(maxsize=64)
def _derive(master: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(master)


def derived(purpose: str) -> bytes:
    return _derive(_master(), f"vitamin/lookup/{purpose}")


@functools.lru_cache(maxsize=64)
def _pseudonym_key(master: bytes, slug: str, release: str) -> PseudonymKey:
    return PseudonymKey.derive(master, slug, release)


def pseudonym_key(slug: str, release: str) -> PseudonymKey:
    return _pseudonym_key(_master(), slug, release)


def subject(institution_id: int, pseudonym: str) -> str:
    return hmac.new(derived(f"subject/{institution_id}"), pseudonym.encode(), hashlib.sha256).hexdigest()
