"""OAuth clients of partner institutions and what the authorization server issues to them.

Secrets (client secrets, tokens, codes, initial access tokens) are stored only as
SHA-256 hashes; see oauth.credentials.
"""

from __future__ import annotations

import uuid

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from institutions.models import Institution, InstitutionStatus
from oauth import credentials
from oauth.scopes import parse_scope


class AuthMethod(models.TextChoices):
    CLIENT_SECRET_BASIC = "client_secret_basic", _("Client secret (HTTP Basic)")
    CLIENT_SECRET_POST = "client_secret_post", _("Client secret (form post)")
    PRIVATE_KEY_JWT = "private_key_jwt", _("Signed JWT with a registered key (RFC 7523)")


SECRET_AUTH_METHODS = frozenset({AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST})


class GrantType(models.TextChoices):
    CLIENT_CREDENTIALS = "client_credentials", _("Client credentials (machine to machine)")
    AUTHORIZATION_CODE = "authorization_code", _("Authorization code with PKCE (a tool acting for a member)")
    REFRESH_TOKEN = "refresh_token", _("Refresh token")


class Client(ClientMixin, models.Model):
    client_id = models.CharField(max_length=64, unique=True, default=credentials.new_client_id, editable=False)
    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="oauth_clients")
    name = models.CharField(max_length=100)
    #: Space-separated scopes this client may ask for.
    scope = models.TextField(blank=True)
    grant_types = models.JSONField(default=list)
    redirect_uris = models.JSONField(default=list, blank=True)
    token_endpoint_auth_method = models.CharField(
        max_length=32, choices=AuthMethod.choices, default=AuthMethod.CLIENT_SECRET_BASIC
    )
    #: Public keys (JWKS) for private_key_jwt clients.
    jwks = models.JSONField(null=True, blank=True)
    secret_hash = models.CharField(max_length=64, blank=True)
    #: After a rotation the old secret keeps working until previous_secret_expires_at.
    previous_secret_hash = models.CharField(max_length=64, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    dynamically_registered = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["institution", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(parse_scope(self.scope))

    @property
    def uses_secret(self) -> bool:
        return self.token_endpoint_auth_method in SECRET_AUTH_METHODS

    @property
    def is_usable(self) -> bool:
        """Not disabled, and its institution is approved (suspension stops every client at once)."""
        return self.disabled_at is None and self.institution.status == InstitutionStatus.APPROVED

    # --- Authlib's ClientMixin ---------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self):
        return None  # every authorization request must name its redirect_uri

    def get_allowed_scope(self, scope):
        """The scope to grant: all allowed scopes when none is requested; None (invalid_scope) if any
        requested scope is not allowed, rather than silently dropping it."""
        if not scope:
            return " ".join(parse_scope(self.scope))
        requested = parse_scope(scope)
        if not set(requested) <= self.scopes:
            return None
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match, no prefixes or patterns

    @property
    def in_secret_overlap(self) -> bool:
        """Whether the secret in use before the last rotation still works (until previous_secret_expires_at)."""
        return (
            bool(self.previous_secret_hash)
            and self.previous_secret_expires_at is not None
            and timezone.now() < self.previous_secret_expires_at
        )

    def check_client_secret(self, client_secret: str) -> bool:
        # Both hashes are compared, in constant time, whatever the first gives, so the answer's timing
        # does not tell which secret matched (or that an overlap is running).
        current = credentials.matches(client_secret, self.secret_hash)
        previous = credentials.matches(client_secret, self.previous_secret_hash)
        return current or (previous and self.in_secret_overlap)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method in SECRET_AUTH_METHODS:
            return self.uses_secret  # basic and post carry the same secret; accept either
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and GrantType.AUTHORIZATION_CODE in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class ClientActivity(models.Model):
    """When a client last called the API (oauth.activity writes it at most once a minute per process).

    A table of its own, not a column of Client: a write to oauth_client changes the access
    generation (vitamin.access_generation), which would throw away every process's cached
    access reads; this table decides nothing, so it has no trigger.
    """

    client = models.OneToOneField(Client, primary_key=True, on_delete=models.CASCADE, related_name="activity")
    last_api_call_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.client_id} last called the API at {self.last_api_call_at:%Y-%m-%d %H:%M}"


class TokenQuerySet(models.QuerySet):
    def revoke(self, reason: str) -> int:
        return self.filter(revoked_at__isnull=True).update(revoked_at=timezone.now(), revoked_reason=reason)


class Token(TokenMixin, models.Model):
    """An access token, and the refresh token issued with it (if any).

    Tokens descending from one authorization (a code and its refresh rotations)
    share a `family_id`: reuse of a rotated refresh token, or replay of the code,
    revokes the whole family.
    """

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="tokens")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="oauth_tokens"
    )
    grant_type = models.CharField(max_length=32, choices=GrantType.choices)
    scope = models.TextField(blank=True)
    family_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    access_token_hash = models.CharField(max_length=64, unique=True)
    refresh_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    issued_at = models.DateTimeField(default=timezone.now)
    access_expires_at = models.DateTimeField()
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    #: Set when the refresh token was exchanged for a new one; presenting it again is reuse.
    refresh_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=64, blank=True)

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return f"token {self.pk} of {self.client_id} ({self.grant_type})"

    @property
    def scopes(self) -> frozenset[str]:
        """The effective scopes: as granted, narrowed to what the client is allowed now (so narrowing
        a client's scopes takes effect on its live tokens at once)."""
        return frozenset(parse_scope(self.scope)) & self.client.scopes

    def problem(self, kind: str = "access_token") -> str | None:
        """Why this token (its access or its refresh half) cannot be used right now, or None when it can.

        The one check behind API authentication, introspection and refresh. Reads the
        client, its institution and the user: load them with select_related.
        """
        # The kill switches first: a disabled client's or a suspended institution's tokens (which those
        # switches also revoke) are refused with that reason, the one their holder can act on.
        if self.client.disabled_at is not None:
            return "client_disabled"
        if self.client.institution.status != InstitutionStatus.APPROVED:
            return "institution_not_active"
        if self.revoked_at is not None:
            return "revoked"
        if kind == "refresh_token":
            if self.refresh_used_at is not None:
                return "rotated"
            expires_at = self.refresh_expires_at
        else:
            expires_at = self.access_expires_at
        if expires_at is None or timezone.now() >= expires_at:
            return "expired"
        if self.user_id is not None and not self.user.is_active:
            return "user_inactive"
        return None

    # --- Authlib's TokenMixin ------------------------------------------------------
    def check_client(self, client) -> bool:
        return self.client_id == client.pk

    def get_scope(self) -> str:
        return " ".join(parse_scope(" ".join(self.scopes)))

    def get_expires_in(self) -> int:
        return int((self.access_expires_at - self.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return timezone.now() >= self.access_expires_at

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def get_user(self):
        return self.user

    def get_client(self):
        return self.client


class AuthorizationCode(AuthorizationCodeMixin, models.Model):
    code_hash = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    redirect_uri = models.TextField()
    scope = models.TextField(blank=True)
    code_challenge = models.CharField(max_length=128)
    code_challenge_method = models.CharField(max_length=8)
    #: The tokens issued for this code get this family id, so a replay can revoke them.
    family_id = models.UUIDField(default=uuid.uuid4)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    #: Kept (not deleted) after use, to recognise a replay.
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"code {self.pk} for {self.client_id}"

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class RegistrationToken(models.Model):
    """An initial access token for Dynamic Client Registration (RFC 7591), issued on the portal.

    Single use: it registers one client, with at most `scope`.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="registration_tokens")
    scope = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"registration token {self.pk} of {self.institution}"


class UsedAssertion(models.Model):
    """A client assertion (private_key_jwt) already seen, kept until it expires, so it cannot be replayed."""

    key = models.CharField(max_length=64, unique=True)  # SHA-256 of client id and jti
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"assertion {self.key[:12]}… until {self.expires_at:%Y-%m-%d %H:%M}"
