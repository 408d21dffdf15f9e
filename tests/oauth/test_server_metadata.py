"""RFC 8414 metadata follows VITAMIN_PUBLIC_URL, and so do the audiences private_key_jwt accepts."""

from __future__ import annotations

import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc.jwk import RSAKey
from partner_support import make_client

from oauth.models import AuthMethod

pytestmark = pytest.mark.django_db


def test_metadata_uses_the_public_url_when_set(client, settings):
    settings.PUBLIC_URL = "https://vitamin.example.com/"
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == "https://vitamin.example.com"
    assert metadata["token_endpoint"] == "https://vitamin.example.com/oauth/token"
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert "implicit" not in metadata["grant_types_supported"] and "password" not in metadata["grant_types_supported"]


def test_without_a_public_url_the_issuer_is_the_requested_host(client):
    metadata = client.get("/.well-known/oauth-authorization-server", secure=True, HTTP_HOST="localhost").json()
    assert metadata["issuer"] == "https://localhost"


@pytest.mark.parametrize("audience", ["https://vitamin.example.com/oauth/token", "https://vitamin.example.com"])
def test_private_key_jwt_audience_is_our_token_endpoint_or_issuer(client, settings, fund, audience):
    settings.PUBLIC_URL = "https://vitamin.example.com"
    key = RSAKey.generate_key(2048)
    oauth_client, _ = make_client(
        fund, auth_method=AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": [key.as_dict(private=False)]}
    )
    answer = client.post(
        "/oauth/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": private_key_jwt_sign(key, oauth_client.client_id, audience),
        },
        secure=True,
    )
    assert answer.status_code == 200, answer.content


def test_plain_http_off_the_loopback_gets_an_oauth_error_not_a_crash(client, machine):
    answer = client.post("/oauth/token", {"grant_type": "client_credentials"})  # http://testserver
    assert answer.status_code == 400 and answer.json()["error"] == "insecure_transport"
