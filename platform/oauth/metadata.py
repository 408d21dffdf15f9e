"""What the authorization server supports, published at /.well-known/oauth-authorization-server (RFC 8414)."""

from __future__ import annotations

from django.urls import reverse

from institutions.links import absolute_url
from oauth.client_auth import SIGNING_ALGORITHMS
from oauth.flows import CLIENT_AUTH_METHODS
from oauth.models import GrantType
from oauth.scopes import ALL_SCOPES


def capabilities() -> dict:
    """The URL-independent half of the metadata; dynamic registration validates requests against it."""
    return {
        "scopes_supported": list(ALL_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GrantType.values),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }


def issuer(request) -> str:
    """VITAMIN_PUBLIC_URL, or the scheme and host this request came to; no trailing slash."""
    return absolute_url(request, "/").rstrip("/")


def server_metadata(request) -> dict:
    base = issuer(request)
    return {
        "issuer": base,
        "authorization_endpoint": base + reverse("oauth-authorize"),
        "token_endpoint": base + reverse("oauth-token"),
        "revocation_endpoint": base + reverse("oauth-revoke"),
        "introspection_endpoint": base + reverse("oauth-introspect"),
        "registration_endpoint": base + reverse("oauth-register"),
        **capabilities(),
    }
