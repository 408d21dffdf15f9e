"""The OAuth flows (grant types) Vitamin accepts: client_credentials, authorization_code with PKCE S256, refresh_token.

There is no implicit grant, no password grant, no `plain` PKCE and no public
client: every client authenticates at the token endpoint.
"""

from __future__ import annotations

from datetime import timedelta

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidGrantError, InvalidRequestError, InvalidScopeError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from django.utils import timezone

from audit.actors import by_client
from audit.models import Outcome
from audit.service import record
from institutions.models import Member
from oauth.credentials import hash_secret
from oauth.events import http_request_of
from oauth.models import AuthMethod, AuthorizationCode, Token

CLIENT_AUTH_METHODS = [
    AuthMethod.CLIENT_SECRET_BASIC.value,
    AuthMethod.CLIENT_SECRET_POST.value,
    AuthMethod.PRIVATE_KEY_JWT.value,
]
# RFC 6749 recommends at most ten minutes; the code only has to survive one redirect.
AUTHORIZATION_CODE_SECONDS = 300


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        if not self.request.client.is_usable:
            raise InvalidClientError(description="This client is disabled or its institution is not active.")
        return redirect_uri

    def save_authorization_code(self, code, request) -> None:
        AuthorizationCode.objects.create(
            code_hash=hash_secret(code),
            client=request.client,
            user=request.user,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            code_challenge=request.payload.data["code_challenge"],
            code_challenge_method=request.payload.data["code_challenge_method"],
            expires_at=timezone.now() + timedelta(seconds=AUTHORIZATION_CODE_SECONDS),
        )

    def query_authorization_code(self, code, client):
        """The code, claimed for this one exchange. A second use revokes what the first one got (RFC 6749 §4.1.2)."""
        now = timezone.now()
        item = (
            AuthorizationCode.objects.select_related("user", "client")
            .filter(code_hash=hash_secret(code), client=client)
            .first()
        )
        if item is None:
            return None
        claimed = AuthorizationCode.objects.filter(pk=item.pk, used_at__isnull=True).update(used_at=now)
        if not claimed:
            revoked = Token.objects.filter(family_id=item.family_id).revoke("authorization_code_replayed")
            record(
                "oauth.authorization_code_replayed",
                outcome=Outcome.DENIED,
                **by_client(client),
                target=f"authorization_code:{item.pk}",
                details={"tokens_revoked": revoked, "user": item.user.get_username()},
                request=http_request_of(self.request),
            )
            return None
        return item if now < item.expires_at else None

    def delete_authorization_code(self, authorization_code) -> None:
        """Used codes are kept (marked used) so that a replay is recognised."""

    def authenticate_user(self, authorization_code):
        """The member who consented, if still active and still a member of the client's institution."""
        user = authorization_code.user
        still_member = Member.objects.filter(
            user=user, institution_id=authorization_code.client.institution_id
        ).exists()
        return user if user.is_active and still_member else None


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotation: every refresh returns a new refresh token and uses up the old one.

    Presenting a used refresh token again means it leaked (or the legitimate
    client and an attacker raced): the whole family is revoked (RFC 9700 §4.14.2).
    """

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        token = (
            Token.objects.select_related("client", "user").filter(refresh_token_hash=hash_secret(refresh_token)).first()
        )
        if token is None:
            return None
        if token.refresh_used_at is not None:
            self._revoke_reused_family(token)
            return None
        if (
            token.revoked_at is not None
            or token.refresh_expires_at is None
            or timezone.now() >= token.refresh_expires_at
        ):
            return None
        return token

    def issue_token(self, user, refresh_token):
        # Claim the old refresh token atomically: of two concurrent refreshes only one wins.
        claimed = Token.objects.filter(
            pk=refresh_token.pk, refresh_used_at__isnull=True, revoked_at__isnull=True
        ).update(refresh_used_at=timezone.now())
        if not claimed:
            self._revoke_reused_family(refresh_token)
            raise InvalidGrantError("The refresh token has already been used.")
        if not refresh_token.get_scope():
            # Nothing of the original grant is still allowed; an empty scope would mean "everything".
            raise InvalidScopeError("None of this grant's scopes is still allowed for the client.")
        return super().issue_token(user, refresh_token)

    def authenticate_user(self, refresh_token):
        user = refresh_token.user
        return user if user is not None and user.is_active else None

    def revoke_old_credential(self, refresh_token) -> None:
        """Already used up in issue_token; the old access token lives until it expires."""

    def _revoke_reused_family(self, token: Token) -> None:
        revoked = Token.objects.filter(family_id=token.family_id).revoke("refresh_token_reused")
        record(
            "oauth.refresh_token_reused",
            outcome=Outcome.DENIED,
            **by_client(token.client),
            target=f"token:{token.pk}",
            details={"family": str(token.family_id), "tokens_revoked": revoked},
            request=http_request_of(self.request),
        )


class RequireS256(CodeChallenge):
    """PKCE for every authorization request, S256 only (`plain`, or no method at all, is refused)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def __init__(self):
        super().__init__(required=True)

    def validate_code_challenge(self, grant, redirect_uri) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge and code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)
