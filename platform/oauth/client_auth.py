"""private_key_jwt client authentication (RFC 7523 §2.2), and who a failed request claimed to be.

A client that registered a JWKS authenticates with a JWT it signs: iss = sub =
its client id, aud = our token endpoint (or our issuer identifier), an `exp` at
most ASSERTION_MAX_LIFETIME_SECONDS ahead, and a `jti` we have never seen: every
accepted jti is stored until its assertion expires, so a captured assertion
cannot be replayed.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from django.db import IntegrityError, transaction
from django.utils import timezone
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from oauth.models import AuthMethod, UsedAssertion
from vitamin import parsers

ASSERTION_MAX_LIFETIME_SECONDS = 3600
CLOCK_LEEWAY_SECONDS = 60
SIGNING_ALGORITHMS = ["RS256", "PS256", "ES256"]
_MAX_CLAIMED_ID_LENGTH = 64


class PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = AuthMethod.PRIVATE_KEY_JWT.value

    def __init__(self, audiences: list[str]):
        super().__init__(validate_jti=True, leeway=CLOCK_LEEWAY_SECONDS)
        self.audiences = audiences

    def get_audiences(self) -> list[str]:
        return self.audiences

    def resolve_client_public_key(self, client) -> KeySet:
        if not client.jwks:
            raise InvalidClientError(description="This client has no registered keys.")
        return KeySet.import_key_set(client.jwks)

    def process_assertion_claims(self, assertion, resolve_key):
        # As the base class, but with an explicit list of asymmetric algorithms.
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=SIGNING_ALGORITHMS)
        except JoseError as error:
            raise InvalidClientError(description=error.description) from error
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims) -> None:
        expires_at = claims.get("exp")
        if not isinstance(expires_at, int | float):
            raise InvalidClientError(description="The assertion needs a numeric 'exp'.")
        if expires_at > time.time() + ASSERTION_MAX_LIFETIME_SECONDS + CLOCK_LEEWAY_SECONDS:
            raise InvalidClientError(
                description=f"The assertion expires too far ahead (at most {ASSERTION_MAX_LIFETIME_SECONDS} s)."
            )
        super().verify_claims(claims)  # iss = sub, aud, exp, then validate_jti

    def validate_jti(self, claims, jti) -> bool:
        now = timezone.now()
        key = hashlib.sha256(f"{claims['sub']}\x00{jti}".encode()).hexdigest()
        expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC) + timedelta(seconds=CLOCK_LEEWAY_SECONDS)
        UsedAssertion.objects.filter(expires_at__lt=now).delete()
        try:
            with transaction.atomic():
                UsedAssertion.objects.create(key=key, expires_at=expires_at)
        except IntegrityError:
            return False
        return True


def private_key_jwt_method(audiences_of):
    """An Authlib client-auth function; `audiences_of(oauth_request)` names the accepted `aud` values."""

    def authenticate(query_client, request):
        return PrivateKeyJwt(audiences_of(request))(query_client, request)

    return authenticate


def claimed_client_id(request) -> str:
    """The client id a token-endpoint request claims, before it is verified (for throttling and audit)."""
    try:
        basic_id, _ = extract_basic_authorization(request.headers)
    except UnicodeDecodeError:  # Authlib would fail the same way later, with a 500
        raise InvalidClientError(status_code=401, description="The Basic authorization header is not UTF-8.") from None
    claimed = basic_id or request.form.get("client_id") or _assertion_subject(request.form.get("client_assertion"))
    return (claimed or "")[:_MAX_CLAIMED_ID_LENGTH]


def _assertion_subject(assertion: str | None) -> str:
    if not assertion:
        return ""
    try:
        claims = parsers.loads(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError):
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""
