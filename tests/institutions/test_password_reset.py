"""Signing in by e-mail, and resetting a forgotten password by a link mailed to the account's address.

The rules under test: the sign-in field is an e-mail field; a reset request gets the same answer
whether or not an account has the address (and mail only when one does); the link works once; requests are
throttled per address and per client IP address, and one over a limit gets no mail and the same answer,
whether or not an account has the address.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from partner_support import PASSWORD

from audit.models import AuditEvent
from quotas.models import QuotaCounter
from vitamin.env import REGISTRY

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase 42"
_LINK = re.compile(r"https?://\S+/accounts/password-reset/[^/\s]+/[^/\s]+/")


def request_reset(client, email: str, ip: str = "127.0.0.1"):
    return client.post("/accounts/password-reset/", {"email": email}, REMOTE_ADDR=ip)


def reset_link() -> str:
    [message] = mail.outbox
    return _LINK.search(message.body).group(0)


def sign_in(email: str, password: str) -> bool:
    response = Client().post("/accounts/login/", {"username": email, "password": password})
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def test_the_sign_in_field_is_an_email_field_labelled_so(client):
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">E-mail:</label>' in page
    field = re.search(r"<input [^>]*id=\"id_username\"[^>]*>", page).group(0)
    assert 'type="email"' in field and 'autocomplete="username"' in field
    assert 'href="/accounts/password-reset/"' in page


def test_members_sign_in_with_their_address_in_any_case_and_only_with_their_password(alice):
    assert sign_in("alice@fund.example", PASSWORD)
    assert sign_in("  Alice@Fund.EXAMPLE ", PASSWORD)
    assert not sign_in("alice@fund.example", PASSWORD + "x")
    assert not sign_in("alice", PASSWORD)  # not an e-mail address: refused by the field


def test_an_account_whose_username_is_not_its_address_signs_in_by_address(db):
    get_user_model().objects.create_superuser("admin", "admin@vitamin.local", PASSWORD)
    assert sign_in("admin@vitamin.local", PASSWORD)


def test_password_reset_from_request_to_sign_in_with_the_new_password(client, alice):
    answer = request_reset(client, "alice@fund.example")
    assert answer.status_code == 302 and answer["Location"] == "/accounts/password-reset/sent/"
    assert mail.outbox[0].to == ["alice@fund.example"]
    assert "[Vitamin] Choose a new password" == mail.outbox[0].subject
    assert "The link works once, for 60 minutes." in mail.outbox[0].body

    form = client.get(reset_link(), follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True
    )
    assert b"Your new password is set" in done.content

    assert sign_in("alice@fund.example", NEW_PASSWORD)
    assert not sign_in("alice@fund.example", PASSWORD)
    actions = list(AuditEvent.objects.filter(actor_id="alice@fund.example").values_list("action", flat=True))
    assert {"account.password_reset_requested", "account.password_reset"} <= set(actions)


def test_a_used_reset_link_does_not_work_again(client, alice):
    request_reset(client, "alice@fund.example")
    link = reset_link()
    form = client.get(link, follow=True)
    client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    again = Client().get(link, follow=True)
    assert b"This link has already been used" in again.content
    assert b"new_password1" not in again.content
    assert sign_in("alice@fund.example", NEW_PASSWORD)


def test_a_forged_link_or_alices_token_for_another_account_is_refused(client, alice, bob):
    request_reset(client, "alice@fund.example")
    link = reset_link()
    uid, token = link.rstrip("/").split("/")[-2:]
    bobs_uid = urlsafe_base64_encode(force_bytes(bob.pk))
    for bad in (f"/accounts/password-reset/{uid}/{token[:-2]}xx/", f"/accounts/password-reset/{bobs_uid}/{token}/"):
        page = Client().get(bad, follow=True)
        assert b"This link has already been used" in page.content and b"new_password1" not in page.content
    assert sign_in("alice@fund.example", PASSWORD) and sign_in("bob@fund.example", PASSWORD)


def test_a_weak_new_password_is_refused_with_a_reason(client, alice):
    request_reset(client, "alice@fund.example")
    form = client.get(reset_link(), follow=True)
    answer = client.post(form.redirect_chain[-1][0], {"new_password1": "123", "new_password2": "123"})
    assert answer.status_code == 200 and b"This password is too short" in answer.content
    assert sign_in("alice@fund.example", PASSWORD)


def _answer(email: str, ip: str = "127.0.0.1") -> tuple:
    """What the requester sees: the answer's status, headers (their names: the request id differs) and cookies,
    and the page it leads to."""
    client = Client()
    first = request_reset(client, email, ip)
    landing = client.get(first["Location"])
    body = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", landing.content)
    seen = (first.status_code, first["Location"], tuple(sorted(first.headers)), tuple(sorted(first.cookies)))
    return (*seen, landing.status_code, body)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(unknown=st.emails())
def test_unknown_addresses_get_the_same_answer_as_a_known_one_and_no_mail(alice, unknown):
    QuotaCounter.objects.all().delete()  # each example starts the day afresh (the throttle is tested below)
    mail.outbox.clear()
    known = _answer("alice@fund.example")
    assert len(mail.outbox) == 1
    mail.outbox.clear()
    if unknown.lower() == "alice@fund.example":
        return
    assert _answer(unknown) == known
    assert mail.outbox == []


def test_an_unverified_account_gets_no_link_and_the_same_answer(client):
    get_user_model().objects.create_user("new@fund.example", "new@fund.example", PASSWORD, is_active=False)
    answer = request_reset(client, "new@fund.example")
    assert answer["Location"] == "/accounts/password-reset/sent/"
    assert mail.outbox == []


def test_in_the_embedded_default_the_reset_mail_is_printed_on_the_console_as_the_readme_says(
    client, alice, settings, capsys
):
    assert REGISTRY["VITAMIN_EMAIL_BACKEND"].default == "vitamin.mail.ConsoleBackend"
    settings.EMAIL_BACKEND = "vitamin.mail.ConsoleBackend"  # tests otherwise keep mail in memory
    request_reset(client, "alice@fund.example")
    printed = capsys.readouterr().err
    assert "Subject: [Vitamin] Choose a new password" in printed and _LINK.search(printed)
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "password reset links) is printed on the `make run` console" in readme


@pytest.mark.parametrize(("age_seconds", "works"), [(3600 - 60, True), (3600 + 60, False)])
def test_a_link_works_for_the_configured_time_only(alice, settings, age_seconds, works):
    assert settings.PASSWORD_RESET_TIMEOUT == REGISTRY["VITAMIN_PASSWORD_RESET_SECONDS"].default == 3600
    issued = default_token_generator._num_seconds(default_token_generator._now()) - age_seconds
    token = default_token_generator._make_token_with_timestamp(alice, issued, default_token_generator.secret)
    page = Client().get(
        f"/accounts/password-reset/{urlsafe_base64_encode(force_bytes(alice.pk))}/{token}/", follow=True
    )
    assert (b"new_password1" in page.content) is works
    assert (b"This link has already been used" in page.content) is not works


# --- the throttle ---------------------------------------------------------------------------------

ALICE = "alice@fund.example"


def test_the_limits_default_to_5_requests_an_address_and_20_an_ip_address_a_day(settings):
    assert settings.PASSWORD_RESETS_PER_DAY == REGISTRY["VITAMIN_PASSWORD_RESETS_PER_DAY"].default == 5
    assert settings.PASSWORD_RESETS_PER_IP_PER_DAY == REGISTRY["VITAMIN_PASSWORD_RESETS_PER_IP_PER_DAY"].default == 20


def test_the_request_after_the_limit_for_an_address_sends_no_mail_and_gets_the_same_answer(alice):
    accepted = [_answer(ALICE, ip=f"198.51.100.{n}") for n in range(5)]  # each from another IP address
    assert len(mail.outbox) == 5 and all(message.to == [ALICE] for message in mail.outbox)
    throttled = _answer(ALICE, ip="198.51.100.99")
    assert len(mail.outbox) == 5, "the sixth request of the day sent a mail"
    assert throttled == accepted[0] and len(set(accepted)) == 1
    # In any case and with spaces it is the same address (Django finds the account so).
    assert _answer("  Alice@FUND.example ", ip="198.51.100.98") == accepted[0] and len(mail.outbox) == 5


def test_the_limit_per_ip_address_holds_across_addresses(alice, bob, settings):
    settings.PASSWORD_RESETS_PER_IP_PER_DAY = 3
    spray = "203.0.113.7"
    answers = [_answer(address, ip=spray) for address in ("nobody@fund.example", "bob@fund.example", "x@y.example")]
    assert [message.to for message in mail.outbox] == [["bob@fund.example"]]
    assert _answer(ALICE, ip=spray) == answers[0]  # the fourth from this IP address: refused, the same answer
    assert _answer("someone@else.example", ip=spray) == answers[0]
    assert len(mail.outbox) == 1
    assert _answer(ALICE, ip="203.0.113.8") == answers[0]  # another IP address is not held back
    assert [message.to for message in mail.outbox] == [["bob@fund.example"], [ALICE]]


def test_a_refused_request_is_on_record_for_the_account_asked_about_and_sends_nothing(alice, settings):
    settings.PASSWORD_RESETS_PER_DAY = 1
    request_reset(Client(), ALICE, "192.0.2.1")
    request_reset(Client(), ALICE, "192.0.2.2")
    request_reset(Client(), "nobody@fund.example", "192.0.2.3")
    request_reset(Client(), "nobody@fund.example", "192.0.2.3")
    assert len(mail.outbox) == 1
    events = AuditEvent.objects.filter(action="account.password_reset_requested").order_by("seq")
    assert [(e.outcome, e.actor_type, e.actor_id, e.ip, e.details) for e in events] == [
        ("success", "user", ALICE, "192.0.2.1", {}),
        ("denied", "user", ALICE, "192.0.2.2", {"code": "rate_limited", "limit": "address"}),
        ("denied", "system", "", "192.0.2.3", {"code": "rate_limited", "limit": "address"}),
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from([ALICE, "ALICE@fund.example", "bob@fund.example", "nobody@fund.example"]),
            st.sampled_from(["192.0.2.10", "192.0.2.11", "2001:db8::1"]),
        ),
        min_size=1,
        max_size=12,
    ),
    per_address=st.integers(1, 3),
    per_ip=st.integers(1, 4),
)
def test_every_answer_is_the_same_and_mail_goes_exactly_while_both_limits_hold(
    alice, bob, settings, requests, per_address, per_ip
):
    """Against a model: a request is accepted while its address and its IP address are both under their
    limits, counting accepted requests only; an accepted one mails the account if there is one."""
    QuotaCounter.objects.all().delete()
    mail.outbox.clear()
    settings.PASSWORD_RESETS_PER_DAY, settings.PASSWORD_RESETS_PER_IP_PER_DAY = per_address, per_ip
    accounts = {ALICE, "bob@fund.example"}
    by_address, by_ip, expected_mail = {}, {}, []
    reference = None
    for address, ip in requests:
        key = address.lower()
        accepted = by_address.get(key, 0) < per_address and by_ip.get(ip, 0) < per_ip
        if accepted:
            by_address[key] = by_address.get(key, 0) + 1
            by_ip[ip] = by_ip.get(ip, 0) + 1
            if key in accounts:
                expected_mail.append([key])
        answer = _answer(address, ip=ip)
        reference = reference or answer
        assert answer == reference
        assert [message.to for message in mail.outbox] == expected_mail
