"""The onboarding journey in a real browser: sign up, verify, apply, get approved, invite, create a client."""

from __future__ import annotations

import re

import pytest
import requests
from django.core import mail
from partner_support import PASSWORD, credit_code, make_user

from institutions.models import Institution, InstitutionStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/institutions/")


def sign_out(page) -> None:
    page.click("button:has-text('Sign out')")
    page.wait_for_load_state()


def test_from_sign_up_to_a_working_api_client(live_server, page):
    base = live_server.url
    make_user("olga@vitamin.example", staff=True)

    # Sign up and confirm the address from the email.
    page.goto(f"{base}/accounts/signup/")
    page.fill("#id_full_name", "Wang Fang")
    page.fill("#id_email", "wang.fang@fund.example")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_password_again", PASSWORD)
    page.click("button:has-text('Sign up')")
    assert page.locator("h1").inner_text() == "Check your email"
    verification_link = re.search(r"https?://\S+/accounts/verify/\S+/", mail.outbox[-1].body).group(0)
    page.goto(verification_link)
    assert "Your email address is confirmed" in page.locator(".messages").inner_text()

    # Apply for the institution.
    sign_in(page, base, "wang.fang@fund.example")
    page.click("text=Apply for an institution")
    page.fill("#id_legal_name", "蚂蚁演示基金管理有限公司")
    page.select_option("#id_type", "fund_company")
    page.fill("#id_credit_code", credit_code(42))
    page.fill("#id_contact_name", "Wang Fang")
    page.fill("#id_contact_email", "wang.fang@fund.example")
    page.click("button:has-text('File application')")
    assert page.locator("#status").inner_text() == "Pending review"
    institution = Institution.objects.get(legal_name="蚂蚁演示基金管理有限公司")
    sign_out(page)

    # A platform admin approves it from the review queue.
    sign_in(page, base, "olga@vitamin.example")
    page.click("text=Review queue")
    card = page.locator(f"#review-{institution.pk}")
    card.locator("textarea").fill("Business licence verified.")
    card.locator("button:has-text('Approve')").click()
    assert page.locator(".messages").inner_text() == "Approved: 蚂蚁演示基金管理有限公司."
    institution.refresh_from_db()
    assert institution.status == InstitutionStatus.APPROVED
    assert "approved" in mail.outbox[-1].subject
    sign_out(page)

    # The owner invites a colleague and creates an API client.
    sign_in(page, base, "wang.fang@fund.example")
    page.click("text=蚂蚁演示基金管理有限公司")
    page.click("text=Members")
    page.fill("#id_email", "li.lei@fund.example")
    page.select_option("#id_role", "analyst")
    page.click("button:has-text('Send invitation')")
    assert "Invitation sent to li.lei@fund.example" in page.locator(".messages").inner_text()
    assert mail.outbox[-1].to == ["li.lei@fund.example"]

    page.click(f"text=← {institution.legal_name}")
    page.click("text=API clients")
    page.click("text=New client")
    page.fill("#id_name", "Index rebalancer")
    page.check("input[name=scopes][value='catalog:read']")
    page.check("input[name=scopes][value='query']")
    page.click("button:has-text('Create client')")
    client_id = page.locator("#client-id").inner_text()
    secret = page.locator("#client-secret").inner_text()

    token = requests.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10
    )
    assert token.status_code == 200 and token.json()["scope"] == "catalog:read query"

    page.click("text=Continue to the client")
    page.click("#rotate")
    rotated = page.locator("#client-secret").inner_text()
    assert rotated != secret and "previous secret keeps working" in page.content()
    assert requests.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, rotated), timeout=10
    ).ok
