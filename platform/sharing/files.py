"""Signed, expiring file URLs: an HMAC over the file's version and path, the institution, the client and the expiry.

The URL is the credential of a download (Delta Sharing clients fetch files without a token),
so it names who it was issued to; every fetch checks again that the grant still holds, so a
revoked subscription stops downloads at once, whatever URLs were issued before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from vitamin.refusals import Kind, Refusal

_SALT = "vitamin.sharing.file"


@dataclass(frozen=True)
class FileGrant:
    version_id: int
    path: str
    institution_id: int
    client_id: str
    expires_at: float  # Unix time

    @property
    def expires_at_ms(self) -> int:
        return int(self.expires_at * 1000)


def issue(
    version_id: int, path: str, institution_id: int, client_id: str, *, now: float | None = None
) -> tuple[str, FileGrant]:
    grant = FileGrant(version_id, path, institution_id, client_id, (now or time.time()) + settings.SHARING_URL_SECONDS)
    payload = {"v": version_id, "p": path, "i": institution_id, "c": client_id, "e": round(grant.expires_at, 3)}
    return signing.dumps(payload, salt=_SALT, compress=True), grant


def verify(token: str, *, now: float | None = None) -> FileGrant:
    """The grant a URL token carries; a forged, altered or expired one is refused (403, as object stores do)."""
    try:
        payload = signing.loads(token, salt=_SALT)
        grant = FileGrant(
            int(payload["v"]), str(payload["p"]), int(payload["i"]), str(payload["c"]), float(payload["e"])
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise Refusal("This file URL is not valid.", code="url_invalid", kind=Kind.FORBIDDEN) from None
    if grant.expires_at <= (now or time.time()):
        raise Refusal(
            "This file URL has expired; query the table again for new ones.", code="url_expired", kind=Kind.FORBIDDEN
        )
    return grant
