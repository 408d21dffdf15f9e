"""Idempotency: the same transaction id within VITAMIN_LOOKUP_REPLAY_HOURS returns the first answer, byte for byte.

The answer is kept encrypted (AES-256-GCM under a key derived from the pseudonym master
secret, bound to the institution and transaction id), and the request only as a keyed
hash: a database dump shows neither the customers' data nor the identifiers sent.
`erase_expired` (a periodic task) clears answers past their replay window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.utils import timezone

from lookups.keys import derived
from lookups.models import LookupRequest
from vitamin.refusals import Kind, Refusal

_NONCE_BYTES = 12


def request_digest(kind: str, slug: str, body) -> str:
    """A keyed hash of the request as sent (its JSON, canonical): equal for the same request only."""
    canonical = json.dumps([kind, slug, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(derived("request"), canonical.encode(), hashlib.sha256).hexdigest()


def _associated(institution_id: int, transaction_id: str) -> bytes:
    return f"{institution_id}\n{transaction_id}".encode()


def seal(institution_id: int, transaction_id: str, answer: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(derived("answer")).encrypt(nonce, answer, _associated(institution_id, transaction_id))


def unseal(institution_id: int, transaction_id: str, sealed: bytes) -> bytes:
    sealed = bytes(sealed)
    return AESGCM(derived("answer")).decrypt(
        sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _associated(institution_id, transaction_id)
    )


def replay_until(now) -> timezone.datetime:
    return now + timedelta(hours=settings.LOOKUP_REPLAY_HOURS)


def earlier_answer(institution_id: int, transaction_id: str, digest: str, kind: str, now) -> bytes | None:
    """The answer to replay for this transaction id, None for a new one; a Refusal (409) when the id was used
    for another request, or so long ago that its answer is gone."""
    earlier = LookupRequest.objects.filter(institution_id=institution_id, transaction_id=transaction_id).first()
    if earlier is None:
        return None
    if earlier.request_digest != digest or earlier.kind != kind:
        raise Refusal(
            "This transaction id was used for a different request. Use a new transaction id for a new request.",
            code="transaction_id_reused",
            kind=Kind.CONFLICT,
        )
    if earlier.replay_until <= now or not earlier.answer:
        raise Refusal(
            f"This transaction id was used more than {settings.LOOKUP_REPLAY_HOURS} hours ago and its answer is "
            "no longer kept. Use a new transaction id.",
            code="transaction_id_expired",
            kind=Kind.CONFLICT,
        )
    return unseal(institution_id, transaction_id, earlier.answer)


def erase_expired(now=None) -> int:
    """Erase every kept answer past its replay window; returns how many."""
    now = now or timezone.now()
    return LookupRequest.objects.filter(replay_until__lte=now, answer__isnull=False).update(answer=None)
