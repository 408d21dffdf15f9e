"""The DRF side: BearerTokenAuthentication and the scope permission, as the /api/v1/ views will use them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from partner_support import basic_auth

from audit.models import AuditEvent
from oauth import clients
from oauth.authentication import ClientPrincipal
from oauth.credentials import hash_secret
from oauth.models import Token
from oauth.permissions import require_scope
from vitamin import access_generation

pytestmark = pytest.mark.usefixtures("probe_api")


@pytest.fixture
def mint(client):
    """Get a real token from the token endpoint (over https, as Authlib insists outside loopback)."""

    def token_for(client_id: str, secret: str, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        response = client.post("/oauth/token", data, secure=True, HTTP_AUTHORIZATION=basic_auth(client_id, secret))
        assert response.status_code == 200, response.content
        return response.json()["access_token"]

    return token_for


def get(client, path: str, token: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.get(path, secure=True, **headers)


def test_a_valid_token_authenticates_in_one_query_and_exposes_client_and_scopes(
    client, mint, machine, django_assert_num_queries
):
    token = mint(machine.client_id, machine.secret, "query catalog:read")
    access_generation.current()  # the process's one look at its triggers, done
    # The access generation, then the token (its client, institution and user in the same join), and
    # the client's "last API call" (one upsert, at most once a minute per client and process) ...
    with django_assert_num_queries(3):
        response = client.get("/api/v1/probe/catalog", secure=True, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    # ... and while nothing an access decision reads has changed, the generation alone.
    with django_assert_num_queries(1):
        response = client.get("/api/v1/probe/catalog", secure=True, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200

    body = get(client, "/api/v1/probe/query", token).json()
    assert body == {
        "user": machine.client_id,
        "client_id": machine.client_id,
        "institution_id": machine.client.institution_id,
        "scopes": ["catalog:read", "query"],
    }
    event = AuditEvent.objects.get(action="probe.query")
    assert (event.actor_type, event.actor_id, event.institution) == (
        "client",
        machine.client_id,
        str(machine.client.institution_id),
    )


def test_missing_token_gets_a_bearer_challenge(client):
    response = get(client, "/api/v1/probe/query", None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="vitamin"'
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("breakage", ["unknown", "expired", "revoked"])
def test_unknown_expired_and_revoked_tokens_are_invalid_token(client, mint, machine, breakage):
    token = mint(machine.client_id, machine.secret)
    stored = Token.objects.get()
    if breakage == "unknown":
        token = token + "x"
    elif breakage == "expired":
        stored.access_expires_at = timezone.now() - timedelta(seconds=1)
        stored.save()
    else:
        Token.objects.all().revoke("test")
    response = get(client, "/api/v1/probe/query", token)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Bearer realm="vitamin", error="invalid_token"')
    assert response.json()["error"]["code"] == "invalid_token"


def test_missing_scope_is_403_insufficient_scope_naming_it(client, mint, machine):
    token = mint(machine.client_id, machine.secret, "catalog:read")
    response = get(client, "/api/v1/probe/query", token)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert "'query'" in error["message"] and error["details"] == {"required_scope": "query"}
    assert 'error="insufficient_scope", scope="query"' in response["WWW-Authenticate"]
    assert get(client, "/api/v1/probe/catalog", token).status_code == 200


def test_narrowing_a_clients_scopes_narrows_its_live_tokens(client, mint, machine, alice):
    token = mint(machine.client_id, machine.secret, "query catalog:read")
    clients.update_client(machine.client, name=machine.client.name, scope="catalog:read", redirect_uris=[], by=alice)
    assert get(client, "/api/v1/probe/query", token).status_code == 403
    assert get(client, "/api/v1/probe/catalog", token).status_code == 200


def test_member_tokens_authenticate_as_the_member(client, tool, bob):
    Token.objects.create(
        client=tool.client,
        user=bob,
        grant_type="authorization_code",
        scope="query",
        access_token_hash=hash_secret("vat_member"),
        access_expires_at=timezone.now() + timedelta(hours=1),
    )
    assert get(client, "/api/v1/probe/query", "vat_member").json()["user"] == bob.username
    bob.is_active = False
    bob.save()
    assert get(client, "/api/v1/probe/query", "vat_member").status_code == 401


def test_client_principal_and_scope_permission_refuse_misuse(machine):
    principal = ClientPrincipal(machine.client)
    assert principal.is_authenticated and not principal.is_staff and principal.pk is None
    with pytest.raises(ImproperlyConfigured, match="Unknown scope"):
        require_scope("everything")
