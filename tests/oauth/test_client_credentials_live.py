"""Managing a client's credentials on the portal, seen by a partner's OAuth client over a live server.

Secret rotation with its overlap window (and ending it early), per-client scopes, the kill
switch per client and per institution, and "last used". Portal actions are made as the
person would make them (a signed-in session posting the page's forms, CSRF token included);
their effect is checked with Authlib's OAuth client at the token endpoint and with bearer calls
to the API, on the very next request.
"""

from __future__ import annotations

import re

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from django.contrib.auth import get_user_model
from django.test import Client as DjangoClient
from django.utils import timezone
from partner_support import PASSWORD, csrf_token_from, make_user

from audit.models import AuditEvent
from oauth.models import Client, ClientActivity
from vitamin import access_generation

pytestmark = pytest.mark.django_db(transaction=True)


def fetch_token(urls, client_id: str, secret: str, scope: str = "catalog:read usage:read") -> str:
    """A client-credentials access token, fetched by Authlib's client (raises OAuthError when refused)."""
    with OAuth2Session(client_id, secret, scope=scope) as session:
        return session.fetch_token(urls.token, grant_type="client_credentials")["access_token"]


def refused_at_token_endpoint(urls, client_id: str, secret: str, scope: str = "catalog:read usage:read") -> str:
    with pytest.raises(OAuthError) as refusal:
        fetch_token(urls, client_id, secret, scope)
    return refusal.value.error


def call_api(urls, token: str, path: str = "/api/v1/plans") -> requests.Response:
    return requests.get(urls.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def reason(response: requests.Response) -> str:
    """The 401's reason, after checking it is the one invalid_token refusal of RFC 6750."""
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="vitamin", error="invalid_token"')
    error = response.json()["error"]
    assert error["code"] == "invalid_token"
    return error["details"]["reason"]


def portal_post(session: requests.Session, urls, page: str, action: str, data=None) -> requests.Response:
    """Open `page` as the signed-in person, then post `action` with the page's CSRF token (not followed)."""
    opened = session.get(urls.base + page)
    assert opened.status_code == 200, opened.text[:300]
    form = {"csrfmiddlewaretoken": csrf_token_from(opened.text), **(data or {})}
    return session.post(urls.base + action, data=form, allow_redirects=False)


def rotate_on_the_portal(session, urls, client_id: str) -> str:
    answer = portal_post(session, urls, f"/clients/{client_id}/", f"/clients/{client_id}/rotate-secret/")
    assert answer.status_code == 200
    return re.search(r'<code id="client-secret" class="secret">([^<]+)</code>', answer.text).group(1)


def events(action: str):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- secret rotation and its overlap ------------------------------------------------------


def test_the_old_secret_works_during_the_overlap_and_not_after_it_and_the_new_one_works(
    urls, machine, alice, browser_session_for
):
    new_secret = rotate_on_the_portal(browser_session_for(alice), urls, machine.client_id)
    assert new_secret != machine.secret and new_secret.startswith("vcs_")

    for secret in (machine.secret, new_secret):  # both, during the overlap
        assert call_api(urls, fetch_token(urls, machine.client_id, secret)).status_code == 200

    stored = Client.objects.get(pk=machine.client.pk)
    assert stored.previous_secret_expires_at > timezone.now()
    assert machine.secret not in (stored.secret_hash, stored.previous_secret_hash)  # hashes only
    assert new_secret not in (stored.secret_hash, stored.previous_secret_hash)
    # The overlap ends: its stored end moves to the past (no sleeping).
    Client.objects.filter(pk=stored.pk).update(previous_secret_expires_at=timezone.now())

    assert refused_at_token_endpoint(urls, machine.client_id, machine.secret) == "invalid_client"
    assert call_api(urls, fetch_token(urls, machine.client_id, new_secret)).status_code == 200
    [rotated] = events("oauth.client_secret_rotated")
    assert (rotated.actor_type, rotated.actor_id) == ("user", "alice@fund.example")
    assert rotated.details["old_secret_valid_until"] == stored.previous_secret_expires_at.isoformat()


def test_revoke_old_secret_now_ends_the_overlap_at_once(urls, machine, alice, browser_session_for):
    session = browser_session_for(alice)
    new_secret = rotate_on_the_portal(session, urls, machine.client_id)
    fetch_token(urls, machine.client_id, machine.secret)
    page = session.get(f"{urls.base}/clients/{machine.client_id}/").text
    assert 'id="previous-secret"' in page and 'id="end-overlap"' in page

    ended = portal_post(session, urls, f"/clients/{machine.client_id}/", f"/clients/{machine.client_id}/end-overlap/")
    assert ended.status_code == 302

    assert refused_at_token_endpoint(urls, machine.client_id, machine.secret) == "invalid_client"
    fetch_token(urls, machine.client_id, new_secret)
    page = session.get(f"{urls.base}/clients/{machine.client_id}/").text
    assert 'id="previous-secret"' not in page and 'id="end-overlap"' not in page
    [revoked] = events("oauth.client_previous_secret_revoked")
    assert revoked.actor_id == "alice@fund.example" and revoked.target == f"client:{machine.client_id}"

    again = portal_post(session, urls, f"/clients/{machine.client_id}/", f"/clients/{machine.client_id}/end-overlap/")
    assert again.status_code == 302 and len(events("oauth.client_previous_secret_revoked")) == 1


@pytest.mark.parametrize("who", ["bob", "carol", "dave", "mallory"])
def test_only_the_institutions_owners_and_admins_rotate_secrets_or_end_overlaps(
    urls, machine, who, bob, carol, dave, request
):
    people = {"bob": bob, "carol": carol, "dave": dave, "mallory": make_user("mallory@example.net")}
    client = DjangoClient()
    client.force_login(people[who])
    before = Client.objects.get(pk=machine.client.pk).secret_hash
    page = client.get(f"/clients/{machine.client_id}/")
    if who in ("dave", "mallory"):  # another institution's owner, an outsider: not even the page
        assert page.status_code == 403
    else:
        assert page.status_code == 200 and 'id="rotate"' not in page.content.decode()
    for action in ("rotate-secret", "end-overlap", "revoke-tokens"):
        assert client.post(f"/clients/{machine.client_id}/{action}/").status_code == 403, action
    assert Client.objects.get(pk=machine.client.pk).secret_hash == before
    fetch_token(urls, machine.client_id, machine.secret)
    assert events("oauth.client_secret_rotated") == []


def test_signed_out_visitors_are_sent_to_sign_in(machine):
    answer = DjangoClient().post(f"/clients/{machine.client_id}/rotate-secret/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


# --- per-client scopes --------------------------------------------------------------------


def test_narrowed_scopes_are_refused_on_the_next_request_for_tokens_already_issued(
    urls, machine, alice, browser_session_for
):
    token = fetch_token(urls, machine.client_id, machine.secret, "catalog:read usage:read")
    assert call_api(urls, token, "/api/v1/usage").status_code == 200

    saved = portal_post(
        browser_session_for(alice),
        urls,
        f"/clients/{machine.client_id}/",
        f"/clients/{machine.client_id}/",
        {"name": "Index rebalancer", "scopes": ["catalog:read", "query"], "redirect_uris": ""},
    )
    assert saved.status_code == 302

    narrowed = call_api(urls, token, "/api/v1/usage")
    assert narrowed.status_code == 403 and narrowed.json()["error"]["code"] == "insufficient_scope"
    assert call_api(urls, token, "/api/v1/plans").status_code == 200  # what the client still has
    assert refused_at_token_endpoint(urls, machine.client_id, machine.secret, "usage:read") == "invalid_scope"
    fresh = fetch_token(urls, machine.client_id, machine.secret, "catalog:read")
    assert call_api(urls, fresh, "/api/v1/usage").status_code == 403
    [updated] = events("oauth.client_updated")
    assert updated.actor_id == "alice@fund.example"
    assert updated.details["scope"]["to"] == "catalog:read query"
    denied = events("api.denied")
    assert [(event.actor_id, event.details["required_scope"]) for event in denied] == [
        (machine.client_id, "usage:read")
    ] * 2


def test_unknown_or_no_scopes_are_refused_with_the_form_shown_again(machine, alice):
    client = DjangoClient()
    client.force_login(alice)
    for scopes in (["root"], []):
        answer = client.post(f"/clients/{machine.client_id}/", {"name": "x", "scopes": scopes, "redirect_uris": ""})
        assert answer.status_code == 200 and b"errorlist" in answer.content
    assert Client.objects.get(pk=machine.client.pk).scope == machine.client.scope


# --- the kill switch: per client ------------------------------------------------------------


def test_a_disabled_client_is_refused_on_the_next_request_and_works_again_once_enabled(
    urls, machine, alice, olga, browser_session_for
):
    token = fetch_token(urls, machine.client_id, machine.secret)
    assert call_api(urls, token).status_code == 200

    page = f"/clients/{machine.client_id}/"
    assert portal_post(browser_session_for(alice), urls, page, f"{page}disable/").status_code == 302

    assert reason(call_api(urls, token)) == "client_disabled"
    assert refused_at_token_endpoint(urls, machine.client_id, machine.secret) == "invalid_client"
    denied = events("api.denied")[-1]
    assert denied.details["code"] == "invalid_token" and denied.details["reason"] == "client_disabled"

    # Platform staff (not a member of the fund) turn it back on.
    assert portal_post(browser_session_for(olga), urls, page, f"{page}enable/").status_code == 302
    fresh = fetch_token(urls, machine.client_id, machine.secret)
    assert call_api(urls, fresh).status_code == 200
    assert reason(call_api(urls, token)) == "revoked"  # what it held when disabled stays revoked

    disabled, enabled = events("oauth.client_disabled"), events("oauth.client_enabled")
    assert [event.actor_id for event in disabled + enabled] == ["alice@fund.example", "olga@vitamin.example"]
    assert disabled[0].details["tokens_revoked"] == 1


def test_staff_may_stop_any_client_but_analysts_viewers_and_outsiders_may_not(machine, bob, carol, dave, olga):
    for person in (bob, carol, dave):
        client = DjangoClient()
        client.force_login(person)
        assert client.post(f"/clients/{machine.client_id}/disable/").status_code == 403
    assert Client.objects.get(pk=machine.client.pk).disabled_at is None

    analyst = DjangoClient()
    analyst.force_login(bob)
    listing = f"/institutions/{machine.client.institution_id}/clients/"
    assert f'id="switch-{machine.client_id}"' not in analyst.get(listing).content.decode()
    staff = DjangoClient()
    staff.force_login(olga)
    assert f'id="switch-{machine.client_id}"' in staff.get(listing).content.decode()  # from the institution's list
    page = staff.get(f"/clients/{machine.client_id}/").content.decode()
    assert 'id="disable-client"' in page and 'id="rotate"' not in page  # the switch, not the credentials
    assert staff.post(f"/clients/{machine.client_id}/disable/").status_code == 302
    assert Client.objects.get(pk=machine.client.pk).disabled_at is not None
    assert 'id="enable-client"' in staff.get(f"/clients/{machine.client_id}/").content.decode()


def test_the_admin_can_disable_and_enable_clients_through_the_audited_path(urls, machine):
    admin = get_user_model().objects.create_superuser("root", "root@vitamin.example", PASSWORD)
    client = DjangoClient()
    client.force_login(admin)
    changelist = "/admin/oauth/client/"
    for action in ("disable_clients", "enable_clients"):
        answer = client.post(changelist, {"action": action, "_selected_action": [machine.client.pk]})
        assert answer.status_code == 302, action
        if action == "disable_clients":
            assert Client.objects.get(pk=machine.client.pk).disabled_at is not None
            assert refused_at_token_endpoint(urls, machine.client_id, machine.secret) == "invalid_client"
    fetch_token(urls, machine.client_id, machine.secret)
    assert [event.actor_id for event in events("oauth.client_disabled") + events("oauth.client_enabled")] == [
        "root",
        "root",
    ]


# --- the kill switch: per institution --------------------------------------------------------


def test_a_suspended_institution_is_refused_on_the_next_request_for_every_client(
    urls, machine, tool, fund, olga, browser_session_for
):
    tokens = [fetch_token(urls, machine.client_id, machine.secret), fetch_token(urls, tool.client_id, tool.secret)]
    assert all(call_api(urls, token).status_code == 200 for token in tokens)

    staff = browser_session_for(olga)
    page, action = f"/institutions/{fund.pk}/", f"/institutions/{fund.pk}/status/"
    assert portal_post(staff, urls, page, action, {"to_status": "suspended", "reason": "Audit."}).status_code == 302

    assert [reason(call_api(urls, token)) for token in tokens] == ["institution_not_active"] * 2
    assert refused_at_token_endpoint(urls, machine.client_id, machine.secret) == "invalid_client"
    assert {event.details.get("reason") for event in events("api.denied")} == {"institution_not_active"}

    assert portal_post(staff, urls, page, action, {"to_status": "approved", "reason": "Done."}).status_code == 302
    assert call_api(urls, fetch_token(urls, machine.client_id, machine.secret)).status_code == 200


# --- last used ----------------------------------------------------------------------------


def test_last_use_is_shown_and_costs_at_most_one_write_a_minute_outside_the_access_generation(urls, machine, alice):
    client = DjangoClient()
    client.force_login(alice)
    page = client.get(f"/clients/{machine.client_id}/").content.decode()
    assert '<dd id="last-token">never</dd>' in page and '<dd id="last-api-call">never</dd>' in page

    token = fetch_token(urls, machine.client_id, machine.secret)
    generation = access_generation.current()
    assert call_api(urls, token).status_code == 200
    first = ClientActivity.objects.get(client=machine.client).last_api_call_at
    assert access_generation.current() == generation, "noting the call did not invalidate cached access reads"
    assert call_api(urls, token).status_code == 200
    assert ClientActivity.objects.get(client=machine.client).last_api_call_at == first  # within the minute

    local = timezone.localtime(first).strftime("%Y-%m-%d %H:%M")
    page = client.get(f"/clients/{machine.client_id}/").content.decode()
    assert f'<dd id="last-api-call">{local}</dd>' in page
    assert '<dd id="last-token">never</dd>' not in page
    listing = client.get(f"/institutions/{machine.client.institution_id}/clients/").content.decode()
    assert local in listing
