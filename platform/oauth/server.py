"""The authorization server: Authlib's Django integration wired to Vitamin's models, grants and rules.

`authorization_server` is the one instance the views use. Client authentication
for every endpoint passes through `VitaminAuthorizationServer.authenticate_client`,
which throttles failures, records them in the audit log, and refuses clients of
institutions that are not approved.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from authlib.integrations.django_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from audit.actors import by_client, by_client_id
from audit.models import Outcome
from audit.service import record
from oauth import credentials, throttle
from oauth.client_auth import claimed_client_id, private_key_jwt_method
from oauth.endpoints import ClientRegistrationEndpoint, IntrospectionEndpoint, RevocationEndpoint
from oauth.events import http_request_of
from oauth.flows import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant, RequireS256
from oauth.metadata import issuer
from oauth.models import AuthMethod, Client, GrantType, Token
from oauth.scopes import ALL_SCOPES
from vitamin.client_ip import client_ip


class TooManyFailedAttempts(OAuth2Error):
    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after_seconds: int):
        super().__init__(description=f"Too many failed client authentications; retry in {retry_after_seconds} s.")
        self.retry_after_seconds = retry_after_seconds

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after_seconds))]


def _access_token_seconds(client, grant_type) -> int:
    return settings.ACCESS_TOKEN_SECONDS


def _assertion_audiences(oauth_request) -> list[str]:
    """private_key_jwt `aud`: our token endpoint URL, or our issuer identifier."""
    base = issuer(http_request_of(oauth_request))
    return [base + reverse("oauth-token"), base]


class VitaminAuthorizationServer(AuthorizationServer):
    def __init__(self):
        super().__init__(Client, Token)
        self.scopes_supported = list(ALL_SCOPES)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(AuthorizationCodeGrant, [RequireS256()])
        self.register_grant(RefreshTokenGrant)
        self.register_endpoint(RevocationEndpoint)
        self.register_endpoint(IntrospectionEndpoint)
        self.register_endpoint(ClientRegistrationEndpoint(self))
        self.register_client_auth_method(AuthMethod.PRIVATE_KEY_JWT.value, private_key_jwt_method(_assertion_audiences))

    def create_bearer_token_generator(self) -> BearerTokenGenerator:
        return BearerTokenGenerator(
            access_token_generator=lambda **_: credentials.new_secret(credentials.ACCESS_TOKEN_PREFIX),
            refresh_token_generator=lambda **_: credentials.new_secret(credentials.REFRESH_TOKEN_PREFIX),
            expires_generator=_access_token_seconds,
        )

    def create_json_request(self, request):
        json_request = super().create_json_request(request)
        json_request._request = request  # as DjangoOAuth2Request keeps it: for the audit log's IP
        return json_request

    def query_client(self, client_id):
        if not isinstance(client_id, str):
            return None
        return (
            Client.objects.select_related("institution").filter(client_id=client_id, disabled_at__isnull=True).first()
        )

    def authenticate_client(self, request, methods, endpoint="token"):
        http_request = http_request_of(request)
        ip = client_ip(http_request) if http_request is not None else ""
        claimed = claimed_client_id(request)
        wait_seconds = throttle.retry_after_seconds(claimed, ip)
        if wait_seconds:
            raise TooManyFailedAttempts(wait_seconds)
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            throttle.record_failure(claimed, ip)
            self._record_failed_authentication(request, claimed, endpoint, error.get_error_description())
            raise
        if not client.is_usable:
            reason = "The client is disabled or its institution is not active."
            self._record_failed_authentication(request, claimed, endpoint, reason)
            raise InvalidClientError(description=reason)
        return client

    def _record_failed_authentication(self, request, claimed: str, endpoint: str, reason: str) -> None:
        known = (
            Client.objects.filter(client_id=claimed).values_list("institution_id", flat=True).first()
            if claimed
            else None
        )
        record(
            "oauth.client_authentication_failed",
            outcome=Outcome.FAILURE,
            **by_client_id(claimed, "" if known is None else known),
            target=f"endpoint:{endpoint}",
            details={"reason": reason, "client_known": known is not None},
            request=http_request_of(request),
        )

    def save_token(self, token: dict, request) -> Token:
        client = request.client
        grant_type = request.payload.grant_type
        if grant_type == GrantType.AUTHORIZATION_CODE:
            family_id = request.authorization_code.family_id
        elif grant_type == GrantType.REFRESH_TOKEN:
            family_id = request.refresh_token.family_id
        else:
            family_id = uuid.uuid4()
        now = timezone.now()
        refresh_token = token.get("refresh_token")
        item = Token.objects.create(
            client=client,
            user=request.user or None,
            grant_type=grant_type,
            scope=token.get("scope", ""),
            family_id=family_id,
            access_token_hash=credentials.hash_secret(token["access_token"]),
            refresh_token_hash=credentials.hash_secret(refresh_token) if refresh_token else None,
            issued_at=now,
            access_expires_at=now + timedelta(seconds=token["expires_in"]),
            refresh_expires_at=now + timedelta(seconds=settings.REFRESH_TOKEN_SECONDS) if refresh_token else None,
        )
        record(
            "oauth.token_refreshed" if grant_type == GrantType.REFRESH_TOKEN else "oauth.token_issued",
            **by_client(client),
            target=f"token:{item.pk}",
            details={
                "grant_type": grant_type,
                "scope": item.scope,
                "user": item.user.get_username() if item.user else None,
                "family": str(family_id),
                "refresh_token": bool(refresh_token),
            },
            request=http_request_of(request),
        )
        return item


authorization_server = VitaminAuthorizationServer()
