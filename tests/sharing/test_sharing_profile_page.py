"""The portal page where an institution's manager downloads a Delta Sharing profile for one of its clients."""

from __future__ import annotations

import json

import pytest
from catalog_support import approved, auth
from django.test import Client as BrowserClient
from partner_support import basic_auth, make_client

from audit.models import AuditEvent
from datasets.spec import Mode
from oauth.models import Token

PROFILE_FILE = 'attachment; filename="vitamin-{}.share"'


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, [Mode.QUERY, Mode.DOWNLOAD])


@pytest.fixture
def loader(fund):
    """A client of the fund (every scope, client credentials), and its secret."""
    return make_client(fund, name="Lake loader")


def page_url(client_id: str) -> str:
    return f"/clients/{client_id}/sharing-profile/"


def download(browser, user, client_id: str, version) -> dict:
    browser.force_login(user)
    response = browser.post(page_url(client_id), {"version": str(version)})
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"] == PROFILE_FILE.format(client_id)
    assert "no-store" in response["Cache-Control"], "a credential is never cached"
    return json.loads(response.content)


def test_a_manager_downloads_a_version_1_profile_whose_token_works(client, alice, subscription, loader, settings):
    tool, _ = loader
    client.force_login(alice)
    form = client.get(page_url(tool.client_id))
    assert form.status_code == 200
    html = form.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html and 'value="1"' in html and 'value="2"' in html
    assert f"a new bearer token for this client, valid {settings.SHARING_TOKEN_DAYS} days" in html
    assert "rotates the client's secret" in html

    document = download(client, alice, tool.client_id, 1)
    assert document["shareCredentialsVersion"] == 1 and document["endpoint"] == "http://testserver/delta-sharing/"
    assert set(document) == {"shareCredentialsVersion", "endpoint", "bearerToken", "expirationTime"}
    client.logout()  # the token alone opens the share
    shares = client.get("/delta-sharing/shares", **auth(document["bearerToken"]))
    assert shares.status_code == 200 and [item["name"] for item in shares.json()["items"]] == ["vitamin"]
    tables = client.get("/delta-sharing/shares/vitamin/all-tables", **auth(document["bearerToken"])).json()
    assert [table["name"] for table in tables["items"]] == ["industry_prosperity_monthly"]

    (issued,) = AuditEvent.objects.filter(action="oauth.token_issued")
    assert (issued.actor_type, issued.actor_id) == ("user", alice.get_username())
    assert issued.details["scope"] == "download" and issued.details["grant_type"] == "long_lived"


def test_a_version_2_profile_carries_a_new_secret_that_gets_download_tokens(client, alice, subscription, loader):
    tool, old_secret = loader
    document = download(client, alice, tool.client_id, 2)
    assert document["type"] == "oauth_client_credentials" and document["clientId"] == tool.client_id
    assert document["clientSecret"].startswith("vcs_") and document["clientSecret"] != old_secret
    assert document["scope"] == "download" and document["tokenEndpoint"] == "http://testserver/oauth/token"
    token = client.post(
        "/oauth/token",
        {"grant_type": "client_credentials", "scope": document["scope"]},
        secure=True,
        HTTP_AUTHORIZATION=basic_auth(tool.client_id, document["clientSecret"]),
    )
    assert token.status_code == 200, token.content
    assert client.get("/delta-sharing/shares", **auth(token.json()["access_token"])).status_code == 200
    tool.refresh_from_db()
    assert tool.check_client_secret(old_secret), "the old secret overlaps, as with any rotation"
    rotated = AuditEvent.objects.get(action="oauth.client_secret_rotated")
    assert rotated.actor_id == alice.get_username() and rotated.target == f"client:{tool.client_id}"


def test_only_managers_of_the_clients_institution_get_a_profile(client, bob, dave, bank, loader, alice):
    tool, _ = loader
    for outsider in (bob, dave):  # the fund's analyst; the bank's owner
        client.force_login(outsider)
        assert client.get(page_url(tool.client_id)).status_code == 403
        assert client.post(page_url(tool.client_id), {"version": "1"}).status_code == 403
        assert client.post(page_url(tool.client_id), {"version": "2"}).status_code == 403
    client.logout()
    anonymous = client.post(page_url(tool.client_id), {"version": "1"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert not Token.objects.filter(client=tool).exists()
    assert not AuditEvent.objects.filter(action__in=["oauth.token_issued", "oauth.client_secret_rotated"]).exists()
    client.force_login(alice)
    assert client.get(page_url("vtc_nobody")).status_code == 404


def test_the_form_is_protected_against_cross_site_posts(alice, loader):
    tool, _ = loader
    browser = BrowserClient(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post(page_url(tool.client_id), {"version": "1"}).status_code == 403
    assert not Token.objects.filter(client=tool).exists()


def test_a_client_that_cannot_have_the_profile_is_told_why(client, alice, fund):
    query_only, _ = make_client(fund, name="SQL only", scope="catalog:read query")
    client.force_login(alice)
    assert "may not hold the <code>download</code> scope" in client.get(page_url(query_only.client_id)).content.decode()
    refused = client.post(page_url(query_only.client_id), {"version": "1"})
    assert refused.status_code == 400 and "allow it on the client first" in refused.content.decode()
    assert "Content-Disposition" not in refused
    assert client.post(page_url(query_only.client_id), {"version": "3"}).status_code == 400
    assert not Token.objects.filter(client=query_only).exists()


def test_the_client_page_links_managers_to_the_profile_page(client, alice, bob, loader):
    tool, _ = loader
    link = f'href="{page_url(tool.client_id)}"'
    client.force_login(alice)
    assert link in client.get(f"/clients/{tool.client_id}/").content.decode()
    client.force_login(bob)
    assert link not in client.get(f"/clients/{tool.client_id}/").content.decode()
