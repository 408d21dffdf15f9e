"""Delta Sharing profile files for a client: what a partner hands to the `delta-sharing` connector.

- version 1: a bearer token of its own, scope `download`, valid VITAMIN_SHARING_TOKEN_DAYS
  (`bearerToken`, `endpoint`, `expirationTime`);
- version 2: `"type": "oauth_client_credentials"`: the connector fetches short-lived tokens from
  Vitamin's token endpoint with the client's id and secret. Secrets are stored hashed, so making
  one rotates the client's secret (the old one keeps working for VITAMIN_CLIENT_SECRET_OVERLAP_SECONDS).

Either way the secret part is shown once, here, and never stored in clear.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.urls import reverse

from oauth import clients
from oauth.metadata import issuer
from oauth.models import Client, GrantType

SCOPE = "download"


class ProfileError(ValueError):
    """The client cannot have this kind of profile; the message says why."""


def profile(client: Client, *, version: int, request=None, by=None) -> dict:
    base = issuer(request)
    endpoint = base + "/delta-sharing/"
    if version == 1:
        try:
            value, token = clients.issue_long_lived_token(
                client, scope=SCOPE, days=settings.SHARING_TOKEN_DAYS, by=by, request=request
            )
        except clients.ClientConfigError as exc:
            raise ProfileError(str(exc)) from None
        return {
            "shareCredentialsVersion": 1,
            "endpoint": endpoint,
            "bearerToken": value,
            "expirationTime": token.access_expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
    if version == 2:
        if GrantType.CLIENT_CREDENTIALS not in client.grant_types:
            raise ProfileError("A version 2 profile needs a client allowed the client_credentials grant.")
        if SCOPE not in client.scope.split():
            raise ProfileError(f"This client may not hold the {SCOPE!r} scope; allow it on the client first.")
        try:
            secret = clients.rotate_secret(client, by=by, request=request)
        except clients.ClientConfigError as exc:
            raise ProfileError(str(exc)) from None
        return {
            "shareCredentialsVersion": 2,
            "type": "oauth_client_credentials",
            "endpoint": endpoint,
            "tokenEndpoint": base + reverse("oauth-token"),
            "clientId": client.client_id,
            "clientSecret": secret,
            "scope": SCOPE,
        }
    raise ProfileError("A profile is version 1 (bearer token) or 2 (OAuth client credentials).")
