"""Revocation (RFC 7009), introspection (RFC 7662) and dynamic client registration (RFC 7591)."""

from __future__ import annotations

import time

from authlib.oauth2.rfc6749 import AccessDeniedError
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint as BaseRevocationEndpoint
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint as BaseRegistrationEndpoint
from authlib.oauth2.rfc7591 import InvalidClientMetadataError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as BaseIntrospectionEndpoint
from django.db import transaction
from django.utils import timezone

from audit.actors import by_client, by_system
from audit.models import Outcome
from audit.service import record
from oauth import credentials
from oauth.clients import ClientConfigError, create_client
from oauth.events import http_request_of
from oauth.flows import CLIENT_AUTH_METHODS
from oauth.metadata import capabilities
from oauth.models import GrantType, RegistrationToken, Token
from oauth.scopes import parse_scope

# token_type_hint values (RFC 7009 §2.1), not secrets
ACCESS_TOKEN = "access_token"  # noqa: S105
REFRESH_TOKEN = "refresh_token"  # noqa: S105


def error_description(text: str) -> str:
    """OAuth error descriptions allow printable ASCII except double quote and backslash (RFC 6749 §5.2)."""
    return "".join(char if 0x20 <= ord(char) <= 0x7E and char not in '"\\' else "'" for char in text)


def find_token(value: str, hint: str | None) -> Token | None:
    """The token whose access or refresh half is `value`; `presented_as` tells which."""
    digest = credentials.hash_secret(value)
    kinds = [REFRESH_TOKEN, ACCESS_TOKEN] if hint == REFRESH_TOKEN else [ACCESS_TOKEN, REFRESH_TOKEN]
    for kind in kinds:
        field = "access_token_hash" if kind == ACCESS_TOKEN else "refresh_token_hash"
        token = Token.objects.select_related("client__institution", "user").filter(**{field: digest}).first()
        if token is not None:
            token.presented_as = kind
            return token
    return None


class RevocationEndpoint(BaseRevocationEndpoint):
    """Revoking either half of a token revokes its whole family (the grant), per RFC 7009 §2.1."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token, request) -> None:
        revoked = Token.objects.filter(family_id=token.family_id).revoke("revoked_by_client")
        record(
            "oauth.token_revoked",
            **by_client(token.client),
            target=f"token:{token.pk}",
            details={"presented": token.presented_as, "family": str(token.family_id), "tokens_revoked": revoked},
            request=http_request_of(request),
        )


class IntrospectionEndpoint(BaseIntrospectionEndpoint):
    """A client may introspect the tokens issued to itself; anything else is reported inactive."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_permission(self, token, client, request) -> bool:
        return token.client_id == client.pk

    def create_introspection_payload(self, token) -> dict:
        if token is None or token.problem(token.presented_as) is not None:
            return {"active": False}
        return self.introspect_token(token)

    def introspect_token(self, token) -> dict:
        is_access = token.presented_as == ACCESS_TOKEN
        expires_at = token.access_expires_at if is_access else token.refresh_expires_at
        payload = {
            "active": True,
            "client_id": token.client.client_id,
            "institution_id": str(token.client.institution_id),
            "scope": token.get_scope(),
            "exp": int(expires_at.timestamp()),
            "iat": int(token.issued_at.timestamp()),
            "sub": token.user.get_username() if token.user_id else token.client.client_id,
        }
        if is_access:
            payload["token_type"] = "Bearer"  # noqa: S105 - a token type name
        if token.user_id:
            payload["username"] = token.user.get_username()
        return payload


class ClientRegistrationEndpoint(BaseRegistrationEndpoint):
    """RFC 7591 registration with a single-use initial access token issued on the portal.

    The token names the institution and the widest scope the new client may get.
    Keys are accepted inline (`jwks`) only: fetching a `jwks_uri` would make the
    server request arbitrary URLs.
    """

    def authenticate_token(self, request) -> RegistrationToken:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = None
        if scheme.lower() == "bearer" and value.strip():
            token = (
                RegistrationToken.objects.select_related("institution")
                .filter(token_hash=credentials.hash_secret(value.strip()))
                .first()
            )
        if (
            token is None
            or token.used_at is not None
            or timezone.now() >= token.expires_at
            or not token.institution.is_approved
        ):
            record(
                "oauth.client_registration_denied",
                outcome=Outcome.DENIED,
                **by_system(token.institution_id if token else None),
                target=f"registration_token:{token.pk}" if token else "",
                details={
                    "reason": "missing, unknown, used or expired initial access token, or institution not approved"
                },
                request=http_request_of(request),
            )
            raise InvalidTokenError(description="A valid, unused initial access token is required.")
        return token

    def get_server_metadata(self) -> dict:
        return capabilities()

    def generate_client_info(self, request) -> dict:
        # The id and secret are made by create_client (in save_client) and added to the response afterwards.
        return {"client_id_issued_at": int(time.time()), "client_secret_expires_at": 0}

    def save_client(self, client_info, client_metadata, request):
        registration: RegistrationToken = request.credential
        if client_metadata.get("jwks_uri"):
            raise InvalidClientMetadataError("jwks_uri is not supported; send the public keys as jwks.")
        scope = client_metadata.get("scope") or registration.scope
        if not set(parse_scope(scope)) <= set(parse_scope(registration.scope)):
            raise InvalidClientMetadataError(f"scope must be within the initial access token's: {registration.scope}")
        grant_types = client_metadata.get("grant_types") or [GrantType.AUTHORIZATION_CODE]
        response_types = client_metadata.get("response_types") or (
            ["code"] if GrantType.AUTHORIZATION_CODE in grant_types else []
        )
        if ("code" in response_types) != (GrantType.AUTHORIZATION_CODE in grant_types):
            raise InvalidClientMetadataError("response_types 'code' goes with grant_types 'authorization_code'.")
        with transaction.atomic():
            claimed = RegistrationToken.objects.filter(pk=registration.pk, used_at__isnull=True).update(
                used_at=timezone.now()
            )
            if not claimed:
                raise AccessDeniedError("The initial access token has already been used.")
            try:
                client, secret = create_client(
                    registration.institution,
                    name=client_metadata.get("client_name") or "Registered client",
                    scope=scope,
                    grant_types=grant_types,
                    redirect_uris=client_metadata.get("redirect_uris") or [],
                    auth_method=client_metadata["token_endpoint_auth_method"],
                    jwks=client_metadata.get("jwks"),
                    request=http_request_of(request),
                    dynamically_registered=True,
                )
            except ClientConfigError as exc:
                raise InvalidClientMetadataError(error_description(str(exc))) from None
            RegistrationToken.objects.filter(pk=registration.pk).update(client=client)
        client.issued_secret = secret
        return client

    def generate_client_registration_info(self, client, request) -> dict:
        """The new client's id and secret, and what was actually registered (defaults filled in)."""
        info = {
            "client_id": client.client_id,
            "client_name": client.name,
            "scope": client.scope,
            "grant_types": client.grant_types,
            "response_types": ["code"] if GrantType.AUTHORIZATION_CODE in client.grant_types else [],
            "redirect_uris": client.redirect_uris,
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
        }
        if client.issued_secret:
            info["client_secret"] = client.issued_secret  # shown this once; only its hash is stored
        return info
