"""Every supported flow, end to end, with Authlib's OAuth client against a live server."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import RSAKey
from partner_support import REDIRECT_URI, code_verifier, give_consent, make_client

from audit.models import AuditEvent
from oauth.clients import issue_registration_token
from oauth.models import AuthMethod, Token

pytestmark = pytest.mark.django_db(transaction=True)


def introspect(urls, client_id, secret, token) -> dict:
    with OAuth2Session(client_id, secret) as session:
        response = session.introspect_token(urls.introspect, token=token)
    assert response.status_code == 200
    return response.json()


def test_metadata_lists_every_endpoint_and_each_one_answers(urls):
    metadata = requests.get(urls.metadata, timeout=10).json()

    assert metadata["issuer"] == urls.base
    assert metadata["authorization_endpoint"] == urls.authorize
    assert metadata["token_endpoint"] == urls.token
    assert metadata["revocation_endpoint"] == urls.revoke
    assert metadata["introspection_endpoint"] == urls.introspect
    assert metadata["registration_endpoint"] == urls.register
    assert metadata["grant_types_supported"] == ["client_credentials", "authorization_code", "refresh_token"]
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert set(metadata["scopes_supported"]) == {
        "catalog:read",
        "subscriptions:write",
        "query",
        "download",
        "lookup",
        "usage:read",
        "audit:read",
    }
    # Each advertised machine endpoint exists and speaks OAuth (an error about the missing client, not a 404).
    for endpoint in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        answer = requests.post(metadata[endpoint], data={"grant_type": "client_credentials", "token": "x"}, timeout=10)
        assert answer.status_code in (400, 401), endpoint
        assert answer.json()["error"] in ("invalid_client", "invalid_request"), endpoint
    registration = requests.post(metadata["registration_endpoint"], json={"client_name": "x"}, timeout=10)
    assert registration.status_code == 401 and registration.json()["error"] == "invalid_token"
    authorize = requests.get(metadata["authorization_endpoint"], allow_redirects=False, timeout=10)
    assert authorize.status_code == 302 and "/accounts/login/" in authorize.headers["Location"]


def test_client_credentials_with_basic_and_post_authentication(urls, machine):
    with OAuth2Session(machine.client_id, machine.secret, scope="catalog:read query") as session:
        token = session.fetch_token(urls.token, grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "catalog:read query"
    assert "refresh_token" not in token

    with OAuth2Session(machine.client_id, machine.secret, token_endpoint_auth_method="client_secret_post") as session:
        everything = session.fetch_token(urls.token, grant_type="client_credentials")
    assert everything["scope"].split() == machine.client.scope.split()  # no scope asked: all the client may have

    info = introspect(urls, machine.client_id, machine.secret, token["access_token"])
    assert info["active"] is True
    assert info["client_id"] == machine.client_id
    assert info["scope"] == "catalog:read query"
    assert info["token_type"] == "Bearer"
    issued = AuditEvent.objects.filter(action="oauth.token_issued", actor_id=machine.client_id)
    assert issued.count() == 2
    assert all(event.ip == "127.0.0.1" and event.institution == str(machine.client.institution_id) for event in issued)


def test_authorization_code_with_pkce_through_the_consent_screen(urls, tool, bob, browser_session_for):
    verifier = code_verifier()
    with OAuth2Session(
        tool.client_id, tool.secret, scope="catalog:read query", redirect_uri=REDIRECT_URI, code_challenge_method="S256"
    ) as session:
        authorization_url, state = session.create_authorization_url(urls.authorize, code_verifier=verifier)

        browser = browser_session_for(bob)
        consent_page = browser.get(authorization_url)
        assert consent_page.status_code == 200
        assert "Authorize Quant tool" in consent_page.text and "Run SQL queries" in consent_page.text
        assert consent_page.headers["X-Frame-Options"] == "DENY"  # the consent screen cannot be framed

        answer = give_consent(browser, authorization_url)
        assert answer.status_code == 302
        location = answer.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?")
        params = parse_qs(urlsplit(location).query)
        assert params["state"] == [state]
        assert params["iss"] == [urls.base]  # RFC 9207 mix-up defence

        token = session.fetch_token(urls.token, authorization_response=location, code_verifier=verifier)

    assert token["scope"] == "catalog:read query"
    assert token["refresh_token"].startswith("vrt_") and token["access_token"].startswith("vat_")
    info = introspect(urls, tool.client_id, tool.secret, token["access_token"])
    assert info["active"] is True and info["username"] == bob.username
    assert AuditEvent.objects.filter(action="oauth.consent_given", actor_id=bob.username).exists()


def test_consent_denied_sends_access_denied_to_the_client(urls, tool, bob, browser_session_for):
    with OAuth2Session(
        tool.client_id, tool.secret, scope="query", redirect_uri=REDIRECT_URI, code_challenge_method="S256"
    ) as session:
        authorization_url, _ = session.create_authorization_url(urls.authorize, code_verifier=code_verifier())
    answer = give_consent(browser_session_for(bob), authorization_url, decision="deny")
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["access_denied"]


def _tokens_for(urls, tool, member, browser_session_for, scope="catalog:read query") -> dict:
    verifier = code_verifier()
    with OAuth2Session(
        tool.client_id, tool.secret, scope=scope, redirect_uri=REDIRECT_URI, code_challenge_method="S256"
    ) as session:
        authorization_url, _ = session.create_authorization_url(urls.authorize, code_verifier=verifier)
        location = give_consent(browser_session_for(member), authorization_url).headers["Location"]
        return session.fetch_token(urls.token, authorization_response=location, code_verifier=verifier)


def test_refresh_rotates_and_reuse_revokes_the_whole_family(urls, tool, bob, browser_session_for):
    first = _tokens_for(urls, tool, bob, browser_session_for)
    with OAuth2Session(tool.client_id, tool.secret) as session:
        second = session.refresh_token(urls.token, refresh_token=first["refresh_token"])
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["scope"] == "catalog:read query"
        narrower = session.refresh_token(urls.token, refresh_token=second["refresh_token"], scope="catalog:read")
        assert narrower["scope"] == "catalog:read"

    # The first refresh token was used up: presenting it again is reuse.
    reused = requests.post(
        urls.token,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(tool.client_id, tool.secret),
        timeout=10,
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    for token in (first, second, narrower):
        assert introspect(urls, tool.client_id, tool.secret, token["access_token"])["active"] is False
    assert introspect(urls, tool.client_id, tool.secret, narrower["refresh_token"])["active"] is False
    family = Token.objects.filter(user=bob)
    assert family.count() == 3 and not family.filter(revoked_at__isnull=True).exists()
    assert set(family.values_list("revoked_reason", flat=True)) == {"refresh_token_reused"}
    assert AuditEvent.objects.filter(action="oauth.refresh_token_reused", outcome="denied").count() == 1
    assert AuditEvent.objects.filter(action="oauth.token_refreshed").count() == 2


def test_revocation_of_access_and_refresh_tokens(urls, tool, machine, bob, browser_session_for):
    with OAuth2Session(machine.client_id, machine.secret) as session:
        token = session.fetch_token(urls.token, grant_type="client_credentials")
        assert session.revoke_token(urls.revoke, token=token["access_token"]).status_code == 200
        # Unknown tokens are "revoked" too, silently (RFC 7009 §2.2).
        assert session.revoke_token(urls.revoke, token="vat_never-issued").status_code == 200
    assert introspect(urls, machine.client_id, machine.secret, token["access_token"])["active"] is False

    grant = _tokens_for(urls, tool, bob, browser_session_for)
    with OAuth2Session(tool.client_id, tool.secret) as session:
        answer = session.revoke_token(urls.revoke, token=grant["refresh_token"], token_type_hint="refresh_token")
        assert answer.status_code == 200
    refreshed = requests.post(
        urls.token,
        data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
        auth=(tool.client_id, tool.secret),
        timeout=10,
    )
    assert refreshed.json()["error"] == "invalid_grant"
    assert introspect(urls, tool.client_id, tool.secret, grant["access_token"])["active"] is False
    assert AuditEvent.objects.filter(action="oauth.token_revoked").count() == 2


def test_a_client_cannot_revoke_or_introspect_another_clients_token(urls, machine, bank):
    other, other_secret = make_client(bank, name="Bank client")
    with OAuth2Session(machine.client_id, machine.secret) as session:
        token = session.fetch_token(urls.token, grant_type="client_credentials")
    with OAuth2Session(other.client_id, other_secret) as session:
        assert session.introspect_token(urls.introspect, token=token["access_token"]).json() == {"active": False}
        assert session.revoke_token(urls.revoke, token=token["access_token"]).status_code == 400
    assert introspect(urls, machine.client_id, machine.secret, token["access_token"])["active"] is True


def test_dynamic_client_registration_with_an_initial_access_token(urls, fund, alice):
    initial = issue_registration_token(fund, scope="catalog:read query download", by=alice)
    metadata = {
        "client_name": "Registered rebalancer",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "scope": "catalog:read query",
    }
    answer = requests.post(urls.register, json=metadata, headers={"Authorization": f"Bearer {initial}"}, timeout=10)
    assert answer.status_code == 201, answer.text
    registered = answer.json()
    assert registered["client_id"].startswith("vtc_") and registered["client_secret"].startswith("vcs_")
    assert registered["scope"] == "catalog:read query"
    assert registered["token_endpoint_auth_method"] == "client_secret_basic"

    with OAuth2Session(registered["client_id"], registered["client_secret"]) as session:
        token = session.fetch_token(urls.token, grant_type="client_credentials")
    assert token["scope"] == "catalog:read query"

    # Single use.
    again = requests.post(urls.register, json=metadata, headers={"Authorization": f"Bearer {initial}"}, timeout=10)
    assert again.status_code == 401 and again.json()["error"] == "invalid_token"
    assert AuditEvent.objects.filter(action="oauth.client_registered", actor_id=registered["client_id"]).exists()


def test_registration_cannot_exceed_the_initial_access_tokens_scope_or_skip_redirect_rules(urls, fund, alice):
    for metadata, problem in [
        ({"grant_types": ["client_credentials"], "response_types": [], "scope": "audit:read"}, "scope"),
        ({"grant_types": ["authorization_code"], "redirect_uris": ["http://evil.example/cb"]}, "https"),
        ({"grant_types": ["implicit"], "response_types": ["token"]}, ""),
        ({"grant_types": ["client_credentials"], "response_types": [], "jwks_uri": "https://x.example/jwks"}, "jwks"),
    ]:
        initial = issue_registration_token(fund, scope="catalog:read", by=alice)
        answer = requests.post(urls.register, json=metadata, headers={"Authorization": f"Bearer {initial}"}, timeout=10)
        assert answer.status_code == 400, metadata
        assert answer.json()["error"] == "invalid_client_metadata"
        assert problem in answer.json().get("error_description", ""), answer.json()
    assert not fund.oauth_clients.exists()


def _rsa_client(fund):
    key = RSAKey.generate_key(2048)
    jwks = {"keys": [key.as_dict(private=False)]}
    client, secret = make_client(fund, name="Signed client", auth_method=AuthMethod.PRIVATE_KEY_JWT, jwks=jwks)
    assert secret is None
    return client, key


def test_private_key_jwt_client_authentication(urls, fund):
    client, key = _rsa_client(fund)
    with OAuth2Session(client.client_id, key, token_endpoint_auth_method="private_key_jwt", scope="query") as session:
        session.register_client_auth_method(PrivateKeyJWT(urls.token))
        token = session.fetch_token(urls.token, grant_type="client_credentials")
        second = session.fetch_token(urls.token, grant_type="client_credentials")  # a fresh jti each time
    assert token["scope"] == "query" and second["access_token"] != token["access_token"]


def test_dynamic_registration_of_a_private_key_jwt_client(urls, fund, alice):
    key = RSAKey.generate_key(2048)
    initial = issue_registration_token(fund, scope="catalog:read", by=alice)
    answer = requests.post(
        urls.register,
        json={
            "client_name": "Signed tool",
            "grant_types": ["client_credentials"],
            "response_types": [],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
        headers={"Authorization": f"Bearer {initial}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    assert "client_secret" not in answer.json()
    with OAuth2Session(answer.json()["client_id"], key, token_endpoint_auth_method="private_key_jwt") as session:
        session.register_client_auth_method(PrivateKeyJWT(urls.token))
        assert session.fetch_token(urls.token, grant_type="client_credentials")["scope"] == "catalog:read"
