"""A forgotten password, in a real browser: ask for a link, open it from the e-mail, set a new password, sign in."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from partner_support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "another long passphrase 77"


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()


def test_a_member_resets_a_forgotten_password_and_the_link_works_once(live_server, page, alice):
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    assert page.locator("#id_username").get_attribute("type") == "email"
    page.click("#forgot-password")
    page.fill("#id_email", "ALICE@fund.example")
    page.click("#send-reset")
    assert "If an account has that address" in page.locator("#reset-sent").inner_text()
    [message] = mail.outbox
    link = re.search(r"https?://\S+/accounts/password-reset/\S+/\S+/", message.body).group(0)

    page.goto(link)
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    page.click("#set-password")
    assert "Your new password is set" in page.locator("#reset-complete").inner_text()

    page.goto(link)
    assert "already been used" in page.locator("#reset-link-invalid").inner_text()

    sign_in(page, base, "alice@fund.example", PASSWORD)
    assert page.url.startswith(f"{base}/accounts/login/")  # the old password no longer works
    sign_in(page, base, "alice@fund.example", NEW_PASSWORD)
    assert page.url == f"{base}/institutions/"

    # An address no account has: the same page, and no mail.
    page.click("button:has-text('Sign out')")
    page.goto(f"{base}/accounts/password-reset/")
    page.fill("#id_email", "nobody@nowhere.example")
    page.click("#send-reset")
    assert "If an account has that address" in page.locator("#reset-sent").inner_text()
    assert len(mail.outbox) == 1
