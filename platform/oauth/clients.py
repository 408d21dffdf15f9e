"""Managing OAuth clients: create, change, rotate secrets (and end an overlap), revoke tokens, disable and
enable; and initial access tokens.

Every path (portal, management commands, dynamic registration, the demo) goes
through these functions, so the rules (redirect URI policy, allowed scopes and
grants, keys) and the audit events live here once.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from audit.actors import by_client, by_user, by_user_or_system
from audit.service import record
from institutions.models import Institution
from oauth import credentials
from oauth.models import SECRET_AUTH_METHODS, AuthMethod, Client, GrantType, RegistrationToken, Token
from oauth.scopes import format_scope, parse_scope, unknown_scopes

REGISTRATION_TOKEN_SECONDS = 24 * 3600
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_PRIVATE_KEY_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


class ClientConfigError(ValueError):
    """A client configuration that Vitamin refuses; the message says what to change."""


def check_redirect_uri(uri: str) -> None:
    """https with a host, or http on a loopback address (local tools, RFC 8252); never a fragment."""
    parts = urlsplit(uri)
    if "#" in uri:
        raise ClientConfigError(f"Redirect URI {uri} must not contain a fragment.")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return
    raise ClientConfigError(f"Redirect URI {uri} must use https (or http on localhost/127.0.0.1 for local tools).")


def check_jwks(jwks) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ClientConfigError('The key set must be a JWKS object: {"keys": [...]}.')
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ClientConfigError("Only RSA and EC public keys are accepted.")
        if _PRIVATE_KEY_MEMBERS & set(key):
            raise ClientConfigError("The key set contains private key material; register public keys only.")
    try:
        KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientConfigError(f"The key set cannot be read: {exc}") from None


def _checked_config(*, scope, grant_types, redirect_uris, auth_method, jwks) -> dict:
    scopes = parse_scope(scope)
    if unknown := unknown_scopes(scopes):
        raise ClientConfigError(f"Unknown scopes: {' '.join(unknown)}.")
    if not scopes:
        raise ClientConfigError("Choose at least one scope.")
    grant_types = list(dict.fromkeys(grant_types))
    if not grant_types or not set(grant_types) <= set(GrantType.values):
        raise ClientConfigError(f"Grant types must be chosen from: {', '.join(GrantType.values)}.")
    if GrantType.REFRESH_TOKEN in grant_types and GrantType.AUTHORIZATION_CODE not in grant_types:
        raise ClientConfigError("refresh_token is only issued with authorization_code.")
    redirect_uris = list(dict.fromkeys(uri.strip() for uri in redirect_uris if uri.strip()))
    for uri in redirect_uris:
        check_redirect_uri(uri)
    if GrantType.AUTHORIZATION_CODE in grant_types and not redirect_uris:
        raise ClientConfigError("authorization_code needs at least one redirect URI.")
    if auth_method not in AuthMethod.values:
        raise ClientConfigError(f"Client authentication must be one of: {', '.join(AuthMethod.values)}.")
    if auth_method == AuthMethod.PRIVATE_KEY_JWT:
        check_jwks(jwks)
    elif jwks:
        raise ClientConfigError("A key set is only used with private_key_jwt.")
    return {
        "scope": format_scope(scopes),
        "grant_types": grant_types,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": auth_method,
        "jwks": jwks if auth_method == AuthMethod.PRIVATE_KEY_JWT else None,
    }


def _checked_name(name: str) -> str:
    name = (name or "").strip()
    if len(name) > Client._meta.get_field("name").max_length:
        raise ClientConfigError("The client name is too long (at most 100 characters).")
    return name


def create_client(
    institution: Institution,
    *,
    name: str,
    scope: str,
    grant_types: list[str],
    redirect_uris: list[str] = (),
    auth_method: str = AuthMethod.CLIENT_SECRET_BASIC,
    jwks: dict | None = None,
    by=None,
    request=None,
    dynamically_registered: bool = False,
) -> tuple[Client, str | None]:
    """Create a client; returns it and its secret (None for private_key_jwt), which is never stored."""
    if not institution.is_approved:
        raise ClientConfigError(f"{institution.legal_name} is not approved; it cannot have clients yet.")
    config = _checked_config(
        scope=scope, grant_types=grant_types, redirect_uris=redirect_uris, auth_method=auth_method, jwks=jwks
    )
    secret = credentials.new_secret(credentials.CLIENT_SECRET_PREFIX) if auth_method in SECRET_AUTH_METHODS else None
    with transaction.atomic():
        client = Client.objects.create(
            institution=institution,
            name=_checked_name(name) or "Unnamed client",
            secret_hash=credentials.hash_secret(secret) if secret else "",
            created_by=by,
            dynamically_registered=dynamically_registered,
            **config,
        )
        record(
            "oauth.client_registered" if dynamically_registered else "oauth.client_created",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={"name": client.name, **config, "jwks": bool(config["jwks"])},
            request=request,
        )
    return client, secret


def update_client(client: Client, *, name: str, scope: str, redirect_uris: list[str], by, request=None) -> Client:
    """Change name, scopes and redirect URIs. Narrower scopes apply to live tokens at once (Token.scopes)."""
    config = _checked_config(
        scope=scope,
        grant_types=client.grant_types,
        redirect_uris=redirect_uris,
        auth_method=client.token_endpoint_auth_method,
        jwks=client.jwks,
    )
    before = {"name": client.name, "scope": client.scope, "redirect_uris": client.redirect_uris}
    client.name = _checked_name(name) or client.name
    client.scope = config["scope"]
    client.redirect_uris = config["redirect_uris"]
    after = {"name": client.name, "scope": client.scope, "redirect_uris": client.redirect_uris}
    with transaction.atomic():
        client.save(update_fields=["name", "scope", "redirect_uris"])
        record(
            "oauth.client_updated",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={key: {"from": before[key], "to": after[key]} for key in after if before[key] != after[key]},
            request=request,
        )
    return client


def rotate_secret(client: Client, *, by=None, request=None) -> str:
    """A new secret, shown once. The old one keeps working for VITAMIN_CLIENT_SECRET_OVERLAP_SECONDS."""
    if not client.uses_secret:
        raise ClientConfigError("This client authenticates with its keys (private_key_jwt); it has no secret.")
    secret = credentials.new_secret(credentials.CLIENT_SECRET_PREFIX)
    overlap_seconds = settings.CLIENT_SECRET_OVERLAP_SECONDS
    client.previous_secret_hash = client.secret_hash if overlap_seconds else ""
    client.previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap_seconds) if overlap_seconds else None
    client.secret_hash = credentials.hash_secret(secret)
    with transaction.atomic():
        client.save(update_fields=["secret_hash", "previous_secret_hash", "previous_secret_expires_at"])
        record(
            "oauth.client_secret_rotated",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={
                "old_secret_valid_until": client.previous_secret_expires_at.isoformat() if overlap_seconds else None
            },
            request=request,
        )
    return secret


def end_secret_overlap(client: Client, *, by=None, request=None) -> bool:
    """Stop the previous secret now, before its overlap ends (it is rolled out, or it leaked).

    False when there was nothing to stop (no rotation, or its overlap already over).
    """
    if not client.in_secret_overlap:
        return False
    until = client.previous_secret_expires_at
    client.previous_secret_hash = ""
    client.previous_secret_expires_at = None
    with transaction.atomic():
        client.save(update_fields=["previous_secret_hash", "previous_secret_expires_at"])
        record(
            "oauth.client_previous_secret_revoked",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={"would_have_worked_until": until.isoformat()},
            request=request,
        )
    return True


def issue_long_lived_token(client: Client, *, scope: str, days: int, by=None, request=None) -> tuple[str, Token]:
    """An access token for `client` that lasts `days` (a Delta Sharing profile's bearer token), shown once.

    Only for a live client of an approved institution whose scopes include `scope`; it is an ordinary
    access token otherwise: revoked with the client's tokens, stopped with its client or institution.
    """
    if client.disabled_at is not None or not client.institution.is_approved:
        raise ClientConfigError("This client is disabled, or its institution is not approved.")
    if scope not in client.scope.split():
        raise ClientConfigError(f"This client may not hold the {scope!r} scope; allow it on the client first.")
    value = credentials.new_secret(credentials.ACCESS_TOKEN_PREFIX)
    now = timezone.now()
    with transaction.atomic():
        token = Token.objects.create(
            client=client,
            grant_type=GrantType.CLIENT_CREDENTIALS,
            scope=scope,
            access_token_hash=credentials.hash_secret(value),
            issued_at=now,
            access_expires_at=now + timedelta(days=days),
        )
        record(
            "oauth.token_issued",
            **_actor(by, client),
            target=f"token:{token.pk}",
            details={"grant_type": "long_lived", "scope": scope, "days": days},
            request=request,
        )
    return value, token


def revoke_client_tokens(client: Client, *, by=None, request=None, reason: str = "revoked_by_institution") -> int:
    with transaction.atomic():
        revoked = Token.objects.filter(client=client).revoke(reason)
        record(
            "oauth.client_tokens_revoked",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={"tokens_revoked": revoked, "reason": reason},
            request=request,
        )
    return revoked


def disable_client(client: Client, *, by=None, request=None) -> None:
    """The client's kill switch: it can no longer authenticate, and its tokens are revoked (and refused
    with reason `client_disabled` on the next request). `enable_client` undoes the first, not the second."""
    if client.disabled_at is not None:
        return
    with transaction.atomic():
        client.disabled_at = timezone.now()
        client.save(update_fields=["disabled_at"])
        revoked = Token.objects.filter(client=client).revoke("client_disabled")
        record(
            "oauth.client_disabled",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={"tokens_revoked": revoked},
            request=request,
        )


def enable_client(client: Client, *, by=None, request=None) -> None:
    """Let a disabled client get tokens again (its institution permitting); its old tokens stay revoked."""
    if client.disabled_at is None:
        return
    disabled_at = client.disabled_at
    with transaction.atomic():
        client.disabled_at = None
        client.save(update_fields=["disabled_at"])
        record(
            "oauth.client_enabled",
            **_actor(by, client),
            target=f"client:{client.client_id}",
            details={"disabled_at": disabled_at.isoformat()},
            request=request,
        )


def issue_registration_token(institution: Institution, *, scope: str, by, request=None) -> str:
    """An initial access token for Dynamic Client Registration (RFC 7591): single use, one day."""
    if not institution.is_approved:
        raise ClientConfigError(f"{institution.legal_name} is not approved.")
    scopes = parse_scope(scope)
    if unknown_scopes(scopes) or not scopes:
        raise ClientConfigError("Choose at least one known scope.")
    value = credentials.new_secret(credentials.REGISTRATION_TOKEN_PREFIX)
    with transaction.atomic():
        token = RegistrationToken.objects.create(
            token_hash=credentials.hash_secret(value),
            institution=institution,
            scope=format_scope(scopes),
            created_by=by,
            expires_at=timezone.now() + timedelta(seconds=REGISTRATION_TOKEN_SECONDS),
        )
        record(
            "oauth.registration_token_issued",
            **by_user(by, institution.pk),
            target=f"registration_token:{token.pk}",
            details={"scope": token.scope, "expires_at": token.expires_at.isoformat()},
            request=request,
        )
    return value


def _actor(user, client: Client) -> dict:
    """A portal user, the client itself (dynamic registration), or the system (management commands)."""
    if user is None and client.dynamically_registered:
        return by_client(client)
    return by_user_or_system(user, client.institution_id)
