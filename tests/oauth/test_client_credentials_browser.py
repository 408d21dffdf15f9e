"""Rotating a client's secret on its page, in a real browser, and using both secrets during the overlap."""

from __future__ import annotations

import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from partner_support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def token_for(base: str, client_id: str, secret: str) -> dict:
    with OAuth2Session(client_id, secret, scope="catalog:read") as session:
        return session.fetch_token(f"{base}/oauth/token", grant_type="client_credentials")


def test_an_owner_rotates_the_secret_and_ends_the_overlap_on_the_client_page(live_server, page, machine, alice):
    base = live_server.url
    page.goto(f"{base}/accounts/login/?next=/clients/{machine.client_id}/")
    assert page.locator("label[for=id_username]").inner_text() == "E-mail:"
    page.fill("#id_username", "alice@fund.example")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/clients/{machine.client_id}/")
    assert page.locator("#previous-secret").count() == 0

    page.click("#rotate")
    new_secret = page.locator("#client-secret").inner_text()
    assert new_secret.startswith("vcs_") and new_secret != machine.secret
    assert "The previous secret keeps working until" in page.locator(".notice").inner_text()
    assert token_for(base, machine.client_id, machine.secret)["access_token"]  # the overlap
    assert token_for(base, machine.client_id, new_secret)["access_token"]

    page.click("text=Continue to the client")
    assert "works until" in page.locator("#previous-secret").inner_text()
    assert page.locator("#last-token").inner_text() != "never"
    page.click("#end-overlap")
    assert "The previous secret no longer works" in page.locator(".messages").inner_text()
    assert page.locator("#previous-secret").count() == 0 and page.locator("#end-overlap").count() == 0
    with pytest.raises(OAuthError):
        token_for(base, machine.client_id, machine.secret)
    assert token_for(base, machine.client_id, new_secret)["access_token"]
