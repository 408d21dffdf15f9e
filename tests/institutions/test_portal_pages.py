"""The portal pages with Django's test client: who may do what, and what each page does."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from partner_support import PASSWORD, credit_code, make_user

from audit.models import AuditEvent
from institutions import emails
from institutions.models import Institution, InstitutionStatus, Member, Role
from oauth.models import Client, RegistrationToken

pytestmark = pytest.mark.django_db


def emailed_link(pattern: str) -> str:
    return re.search(rf"https?://\S+{pattern}\S+/", mail.outbox[-1].body).group(0)


def test_sign_up_verify_and_sign_in(client):
    answer = client.post(
        "/accounts/signup/",
        {"full_name": "Wang Fang", "email": "Wang.Fang@Fund.example", "password": PASSWORD, "password_again": PASSWORD},
    )
    assert answer.status_code == 200 and b"Check your email" in answer.content
    user = get_user_model().objects.get(username="wang.fang@fund.example")
    assert not user.is_active and user.first_name == "Wang Fang"
    assert (
        client.post("/accounts/login/", {"username": user.username, "password": PASSWORD}).status_code == 200
    )  # refused

    link = emailed_link("/accounts/verify/")
    assert client.get(link.replace("/verify/", "/verify/x")).status_code == 400
    assert client.get(link)["Location"] == "/accounts/login/"
    user.refresh_from_db()
    assert user.is_active
    signed_in = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/institutions/"


def test_sign_up_refuses_duplicates_and_weak_passwords(client, alice):
    taken = client.post(
        "/accounts/signup/", {"full_name": "A", "email": alice.email, "password": PASSWORD, "password_again": PASSWORD}
    )
    assert b"already exists" in taken.content
    weak = client.post(
        "/accounts/signup/",
        {"full_name": "B", "email": "b@x.example", "password": "12345678", "password_again": "12345678"},
    )
    assert b"too short" in weak.content or b"too common" in weak.content
    assert get_user_model().objects.count() == 1


def test_verification_link_does_not_reactivate_an_account_an_admin_disabled(client, alice):
    emails.send_verification(None, alice)
    client.force_login(alice)  # she has used her account (last_login is set) ...
    alice.refresh_from_db()
    alice.is_active = False  # ... and then an admin switched it off
    alice.save()
    client.get(emailed_link("/accounts/verify/"))
    alice.refresh_from_db()
    assert not alice.is_active


def test_apply_for_an_institution(client, dave):
    client.force_login(dave)
    bad = client.post("/institutions/apply/", _application(code="91330100000000010X"))
    assert b"check character" in bad.content
    answer = client.post("/institutions/apply/", _application())
    institution = Institution.objects.get(legal_name="Applicant Bank")
    assert answer["Location"] == f"/institutions/{institution.pk}/"
    assert institution.status == InstitutionStatus.PENDING and institution.applicant == dave
    assert Member.objects.get(institution=institution, user=dave).role == Role.OWNER


def _application(code: str | None = None) -> dict:
    return {
        "legal_name": "Applicant Bank",
        "type": "bank",
        "credit_code": code or credit_code(99).lower(),  # typed in lower case: accepted and upper-cased
        "contact_name": "Contact",
        "contact_email": "contact99@bank.example",
        "contact_phone": "",
    }


def test_review_queue_is_for_staff_who_approve_or_reject_with_a_reason(client, alice, dave, olga):
    client.force_login(dave)
    client.post("/institutions/apply/", _application())
    institution = Institution.objects.get(legal_name="Applicant Bank")
    assert client.get("/institutions/review/").status_code == 403  # not staff: the site's 403 page
    assert (
        client.post(f"/institutions/{institution.pk}/status/", {"to_status": "approved", "reason": "x"}).status_code
        == 403
    )
    institution.refresh_from_db()
    assert institution.status == InstitutionStatus.PENDING

    client.force_login(olga)
    queue = client.get("/institutions/review/")
    assert f'id="review-{institution.pk}"' in queue.content.decode()
    no_reason = client.post(f"/institutions/{institution.pk}/status/", {"to_status": "approved", "reason": ""})
    institution.refresh_from_db()
    assert no_reason.status_code == 302 and institution.status == InstitutionStatus.PENDING
    client.post(
        f"/institutions/{institution.pk}/status/",
        {"to_status": "approved", "reason": "Licence ok.", "return_to": "review"},
    )
    institution.refresh_from_db()
    assert institution.status == InstitutionStatus.APPROVED
    after = client.get("/institutions/review/").content.decode()
    assert "is now approved" in after and f'id="review-{institution.pk}"' not in after


def test_institution_pages_are_for_members_and_staff(client, fund, alice, olga):
    outsider = make_user("mallory@evil.example")
    client.force_login(outsider)
    for path in (f"/institutions/{fund.pk}/", f"/institutions/{fund.pk}/members/", f"/institutions/{fund.pk}/clients/"):
        assert client.get(path).status_code == 403, path
    client.force_login(olga)
    page = client.get(f"/institutions/{fund.pk}/")
    assert page.status_code == 200 and b"Change status" in page.content
    client.force_login(alice)
    page = client.get(f"/institutions/{fund.pk}/")
    assert b"Demo Fund Management Co." in page.content and b"Change status" not in page.content


def test_members_page_invitations_by_managers_only(client, fund, alice, bob):
    client.force_login(bob)  # analyst
    assert (
        client.post(f"/institutions/{fund.pk}/members/", {"email": "x@fund.example", "role": "viewer"}).status_code
        == 403
    )
    client.force_login(alice)
    answer = client.post(f"/institutions/{fund.pk}/members/", {"email": "carol@fund.example", "role": "viewer"})
    assert answer.status_code == 302
    assert mail.outbox[-1].to == ["carol@fund.example"] and "/invitations/" in mail.outbox[-1].body
    bob_membership = Member.objects.get(user=bob)
    client.post(f"/institutions/{fund.pk}/members/{bob_membership.pk}/remove/")
    assert not Member.objects.filter(user=bob).exists()


def test_client_pages_create_rotate_revoke_and_disable(client, fund, alice, bob):
    client.force_login(bob)
    assert client.get(f"/institutions/{fund.pk}/clients/").status_code == 200
    assert client.post(f"/institutions/{fund.pk}/clients/new/", {"name": "x"}).status_code == 403

    client.force_login(alice)
    created = client.post(
        f"/institutions/{fund.pk}/clients/new/",
        {
            "name": "Rebalancer",
            "scopes": ["catalog:read", "query"],
            "grant_types": ["client_credentials"],
            "auth_method": "client_secret_basic",
            "redirect_uris": "",
            "jwks": "",
        },
    )
    assert created.status_code == 200 and created["Cache-Control"].startswith("max-age=0")
    secret = re.search(rb'id="client-secret"[^>]*>([^<]+)<', created.content).group(1).decode()
    oauth_client = Client.objects.get(name="Rebalancer")
    assert oauth_client.check_client_secret(secret) and oauth_client.scope == "catalog:read query"
    assert secret.encode() not in client.get(f"/clients/{oauth_client.client_id}/").content  # shown once

    refused = client.post(
        f"/institutions/{fund.pk}/clients/new/",
        {
            "name": "Tool",
            "scopes": ["query"],
            "grant_types": ["authorization_code"],
            "auth_method": "client_secret_basic",
            "redirect_uris": "http://tool.example/cb",
        },
    )
    assert b"must use https" in refused.content

    rotated = client.post(f"/clients/{oauth_client.client_id}/rotate-secret/")
    new_secret = re.search(rb'id="client-secret"[^>]*>([^<]+)<', rotated.content).group(1).decode()
    oauth_client.refresh_from_db()
    assert (
        new_secret != secret
        and oauth_client.check_client_secret(new_secret)
        and oauth_client.check_client_secret(secret)
    )

    client.post(
        f"/clients/{oauth_client.client_id}/", {"name": "Rebalancer 2", "scopes": ["query"], "redirect_uris": ""}
    )
    oauth_client.refresh_from_db()
    assert (oauth_client.name, oauth_client.scope) == ("Rebalancer 2", "query")
    client.post(f"/clients/{oauth_client.client_id}/revoke-tokens/")
    client.post(f"/clients/{oauth_client.client_id}/disable/")
    oauth_client.refresh_from_db()
    assert oauth_client.disabled_at is not None
    actions = set(AuditEvent.objects.filter(target=f"client:{oauth_client.client_id}").values_list("action", flat=True))
    assert actions == {
        "oauth.client_created",
        "oauth.client_secret_rotated",
        "oauth.client_updated",
        "oauth.client_tokens_revoked",
        "oauth.client_disabled",
    }


def test_initial_access_token_is_shown_once(client, fund, alice):
    client.force_login(alice)
    answer = client.post(f"/institutions/{fund.pk}/registration-tokens/", {"scopes": ["catalog:read"]})
    token = re.search(rb'id="registration-token"[^>]*>([^<]+)<', answer.content).group(1).decode()
    assert token.startswith("vit_")
    assert RegistrationToken.objects.get().scope == "catalog:read"
