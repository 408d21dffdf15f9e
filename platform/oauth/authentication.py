"""Bearer-token authentication for the API (RFC 6750), as a DRF authentication class.

    authentication_classes = [BearerTokenAuthentication]

A missing token gives 401 with `WWW-Authenticate: Bearer realm="vitamin"`; an
unknown, expired or revoked one (or one whose client, institution or user was
stopped) gives 401 with `error="invalid_token"`. On success:

- request.user: the member for authorization-code tokens, else a ClientPrincipal;
- request.auth: the Token (its effective scopes in `.scopes`);
- request.auth_client: the Client (`.client_id`, `.institution_id`), also set on
  the Django request, where the audit writer looks for it.

A refusal says why in `error.details.reason` (a stable code from `_PROBLEMS`: `client_disabled`,
`institution_not_active`, `revoked`, ...), under the one `invalid_token` error code of RFC 6750.
A successful call is noted for the client's "last used" (oauth.activity: at most one write a
minute per client and process).

One query (token, client, institution and user with select_related), its row kept
per process while the access generation is unchanged (`vitamin.access_generation`: the
database changes it with every write to those tables); the token's expiry and the
institution's status are checked on every request, so a revocation or a suspension
takes effect on the very next call.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from oauth.activity import note_api_call
from oauth.credentials import hash_secret
from oauth.models import Token
from vitamin import access_generation as generation
from vitamin.errors import ApiError
from vitamin.prepared import PreparedLookup

REALM = "vitamin"
# On every API request: compiled once; read anew whenever the access generation changed (a revoked token is refused at once).
_TOKEN_BY_HASH = PreparedLookup(
    lambda token_hash: Token.objects.select_related("client__institution", "user").filter(access_token_hash=token_hash),
    str,
    cached_by=generation.current,
)
_PROBLEMS = {
    "unknown": "The access token is not valid.",
    "revoked": "The access token has been revoked.",
    "expired": "The access token has expired.",
    "client_disabled": "The client of this access token has been disabled.",
    "institution_not_active": "The institution of this access token is not active.",
    "user_inactive": "The user of this access token is no longer active.",
}


class ClientPrincipal:
    """request.user for tokens a client holds on its own behalf (client_credentials)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, client):
        self.client_id = client.client_id
        self.institution_id = client.institution_id

    def get_username(self) -> str:
        return self.client_id

    def __str__(self) -> str:
        return f"client {self.client_id}"


class InvalidToken(ApiError, exceptions.AuthenticationFailed):
    """401 invalid_token (an AuthenticationFailed, so DRF adds our WWW-Authenticate challenge), with the reason."""

    status_code = 401
    code = "invalid_token"

    def __init__(self, problem: str):
        super().__init__(_PROBLEMS[problem], details={"reason": problem})


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        scheme, _, value = get_authorization_header(request).decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None  # not ours; without any credentials DRF answers 401 with our challenge
        value = value.strip()
        token = None
        if value:
            token = _TOKEN_BY_HASH.first(hash_secret(value))
        problem = "unknown" if token is None else token.problem()
        if problem is not None:
            request.bearer_error = _PROBLEMS[problem]
            raise InvalidToken(problem)
        request.auth_client = request._request.auth_client = token.client
        note_api_call(token.client)
        return (token.user if token.user_id else ClientPrincipal(token.client)), token

    def authenticate_header(self, request) -> str:
        error = getattr(request, "bearer_error", None)
        if error:
            return f'Bearer realm="{REALM}", error="invalid_token", error_description="{error}"'
        return f'Bearer realm="{REALM}"'
