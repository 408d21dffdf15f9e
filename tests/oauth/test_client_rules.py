"""The rules every client configuration passes, whichever path creates or changes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from joserfc.jwk import ECKey, OctKey, RSAKey
from partner_support import make_client, make_institution

from audit.models import AuditEvent
from institutions.models import InstitutionStatus, InstitutionType
from oauth import clients
from oauth.clients import ClientConfigError, check_redirect_uri
from oauth.models import AuthMethod, AuthorizationCode, GrantType, UsedAssertion
from oauth.tasks import purge_expired

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "uri",
    ["https://tool.example/callback", "http://127.0.0.1:8765/cb", "http://localhost/cb", "http://[::1]:9000/cb"],
)
def test_allowed_redirect_uris(uri):
    check_redirect_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "http://tool.example/callback",  # plain http off the loopback
        "https://tool.example/cb#fragment",
        "javascript:alert(1)",
        "https:///no-host",
        "ftp://tool.example/cb",
        "com.example.app:/callback",
    ],
)
def test_refused_redirect_uris(uri):
    with pytest.raises(ClientConfigError):
        check_redirect_uri(uri)


def test_configuration_rules(fund):
    for kwargs, message in [
        ({"scope": "query admin"}, "Unknown scopes: admin"),
        ({"scope": ""}, "at least one scope"),
        ({"grant_types": ["password"]}, "Grant types"),
        ({"grant_types": ["implicit"]}, "Grant types"),
        ({"grant_types": ["refresh_token", "client_credentials"]}, "only issued with authorization_code"),
        ({"grant_types": ["authorization_code"]}, "needs at least one redirect URI"),
        ({"auth_method": "none"}, "Client authentication"),
        ({"auth_method": AuthMethod.PRIVATE_KEY_JWT}, "JWKS"),
        ({"jwks": {"keys": []}}, "only used with private_key_jwt"),
        ({"name": "x" * 101}, "too long"),
    ]:
        with pytest.raises(ClientConfigError, match=message):
            make_client(fund, **{"scope": "query", **kwargs})
    assert not fund.oauth_clients.exists()


@pytest.mark.parametrize(
    "keys, message",
    [
        ([RSAKey.generate_key(2048).as_dict(private=True)], "private key material"),
        ([OctKey.generate_key(256).as_dict()], "Only RSA and EC"),
        ([{"kty": "RSA", "n": "not-a-key"}], "cannot be read"),
    ],
)
def test_key_sets_must_hold_public_rsa_or_ec_keys(fund, keys, message):
    with pytest.raises(ClientConfigError, match=message):
        make_client(fund, auth_method=AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": keys})


def test_ec_public_keys_are_accepted(fund):
    client, secret = make_client(
        fund,
        auth_method=AuthMethod.PRIVATE_KEY_JWT,
        jwks={"keys": [ECKey.generate_key("P-256").as_dict(private=False)]},
    )
    assert secret is None and client.secret_hash == ""
    with pytest.raises(ClientConfigError, match="no secret"):
        clients.rotate_secret(client)


def test_only_approved_institutions_get_clients_and_registration_tokens(dave):
    pending = make_institution(
        "Pending Bank", 7, owner=dave, status=InstitutionStatus.PENDING, type=InstitutionType.BANK
    )
    with pytest.raises(ClientConfigError, match="not approved"):
        make_client(pending)
    with pytest.raises(ClientConfigError, match="not approved"):
        clients.issue_registration_token(pending, scope="query", by=dave)


def test_secret_checks_and_audited_changes(fund, alice):
    client, secret = make_client(fund, grant_types=[GrantType.CLIENT_CREDENTIALS])
    assert client.check_client_secret(secret)
    assert not client.check_client_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not client.check_client_secret("")
    clients.update_client(client, name="Renamed", scope="query", redirect_uris=[], by=alice)
    clients.revoke_client_tokens(client, by=alice)
    actions = list(
        AuditEvent.objects.filter(target=f"client:{client.client_id}").order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["oauth.client_created", "oauth.client_updated", "oauth.client_tokens_revoked"]
    update = AuditEvent.objects.get(action="oauth.client_updated")
    assert update.actor_id == alice.username and update.details["name"] == {"from": "Test client", "to": "Renamed"}


def test_housekeeping_drops_only_codes_and_assertions_that_can_no_longer_matter(tool, bob):
    now = timezone.now()
    for key, age in (("old", timedelta(days=2)), ("recent", timedelta(hours=1))):
        AuthorizationCode.objects.create(
            code_hash=key,
            client=tool.client,
            user=bob,
            redirect_uri="x",
            code_challenge="c",
            code_challenge_method="S256",
            expires_at=now - age,
        )
        UsedAssertion.objects.create(key=key, expires_at=now - age)
    UsedAssertion.objects.create(key="live", expires_at=now + timedelta(minutes=5))
    assert purge_expired() == {"authorization_codes": 1, "client_assertions": 2}
    assert list(AuthorizationCode.objects.values_list("code_hash", flat=True)) == ["recent"]
    assert list(UsedAssertion.objects.values_list("key", flat=True)) == ["live"]
