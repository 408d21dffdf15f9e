"""Attempts to break the authorization server, against a live server: each one must fail, and be recorded."""

from __future__ import annotations

import base64
import ipaddress
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.utils import timezone
from joserfc.jwk import RSAKey
from partner_support import REDIRECT_URI, code_verifier, give_consent, make_client, make_tool_client

from audit.models import AuditEvent
from institutions import lifecycle
from institutions.models import InstitutionStatus
from oauth import clients
from oauth.models import AuthMethod, Token

pytestmark = pytest.mark.django_db(transaction=True)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_credentials(urls, client_id, secret, *, forwarded_for=None, **data):
    return requests.post(
        urls.token,
        data={"grant_type": "client_credentials", **data},
        auth=(client_id, secret),
        headers={"X-Forwarded-For": forwarded_for} if forwarded_for else {},
        timeout=10,
    )


def authorization_url(urls, client_id, **overrides) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "catalog:read",
        "state": "xyz",
        "code_challenge": create_s256_code_challenge("v" * 50),
        "code_challenge_method": "S256",
        **overrides,
    }
    return f"{urls.authorize}?{urlencode({key: value for key, value in params.items() if value is not None})}"


def redirect_error(response) -> str | None:
    assert response.status_code == 302, response.text[:300]
    return parse_qs(urlsplit(response.headers["Location"]).query).get("error", [None])[0]


def exchange(urls, tool, code, verifier, redirect_uri=REDIRECT_URI):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(urls.token, data=data, auth=(tool.client_id, tool.secret), timeout=10)


def code_for(urls, tool, member, browser_session_for, verifier, scope="catalog:read") -> str:
    url = authorization_url(urls, tool.client_id, scope=scope, code_challenge=create_s256_code_challenge(verifier))
    location = give_consent(browser_session_for(member), url).headers["Location"]
    return parse_qs(urlsplit(location).query)["code"][0]


def call_api(urls, access_token, path="/api/v1/probe/query"):
    return requests.get(urls.base + path, headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


# --- client authentication ----------------------------------------------------------------


def test_wrong_secret_unknown_client_and_missing_credentials_are_refused_and_audited(urls, machine):
    wrong = client_credentials(urls, machine.client_id, machine.secret + "x")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"].startswith("Basic ")
    posted = requests.post(
        urls.token,
        data={"grant_type": "client_credentials", "client_id": machine.client_id, "client_secret": "vcs_guess"},
        timeout=10,
    )
    assert posted.status_code == 401
    assert client_credentials(urls, "vtc_nobody", "vcs_guess").status_code == 401
    assert requests.post(urls.token, data={"grant_type": "client_credentials"}, timeout=10).status_code == 401

    garbage = requests.post(
        urls.token,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        timeout=10,
    )
    assert garbage.status_code == 401 and garbage.json()["error"] == "invalid_client"

    failures = AuditEvent.objects.filter(action="oauth.client_authentication_failed", outcome="failure")
    assert failures.count() == 4
    known = failures.filter(actor_id=machine.client_id)
    assert known.count() == 2
    assert all(event.institution == str(machine.client.institution_id) and event.ip == "127.0.0.1" for event in known)
    assert not Token.objects.exists()


def _fresh_minute():
    """The throttle counts per clock minute; start well inside one so the test never straddles two."""
    seconds_into_minute = time.time() % 60
    if seconds_into_minute > 50:
        time.sleep(61 - seconds_into_minute)


def test_brute_force_on_one_client_is_throttled_even_for_the_right_secret(urls, machine, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    _fresh_minute()
    for _ in range(3):
        assert client_credentials(urls, machine.client_id, "vcs_guess").status_code == 401
    blocked = client_credentials(urls, machine.client_id, machine.secret)
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert blocked.json()["error"] == "temporarily_unavailable"
    assert not Token.objects.exists()


def test_brute_force_across_client_ids_from_one_address_is_throttled(urls, machine, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    _fresh_minute()
    for guess in ("vtc_a", "vtc_b", "vtc_c"):
        assert client_credentials(urls, guess, "vcs_guess").status_code == 401
    assert client_credentials(urls, machine.client_id, machine.secret).status_code == 429


def test_a_forged_forwarded_for_does_not_escape_the_address_throttle(urls, machine, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    _fresh_minute()
    for n, guess in enumerate(("vtc_a", "vtc_b", "vtc_c")):
        assert client_credentials(urls, guess, "vcs_guess", forwarded_for=f"203.0.113.{n}").status_code == 401
    spoofed = client_credentials(urls, machine.client_id, machine.secret, forwarded_for="203.0.113.99")
    assert spoofed.status_code == 429  # no proxy is trusted: every attempt counted against 127.0.0.1
    ips = set(AuditEvent.objects.filter(action="oauth.client_authentication_failed").values_list("ip", flat=True))
    assert ips == {"127.0.0.1"}


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_and_audited(urls, machine, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    settings.TRUSTED_PROXIES = (ipaddress.ip_network("127.0.0.0/8"),)  # the test plays the proxy
    _fresh_minute()
    attacker = "198.51.100.23"
    for guess in ("vtc_a", "vtc_b", "vtc_c"):
        # What the attacker wrote at the left of the header is not believed; what our proxy appended is.
        assert client_credentials(urls, guess, "vcs_guess", forwarded_for=f"10.9.9.9, {attacker}").status_code == 401
    assert client_credentials(urls, "vtc_d", "vcs_guess", forwarded_for=attacker).status_code == 429
    # Another partner behind the same proxy is not locked out with the attacker.
    assert client_credentials(urls, machine.client_id, machine.secret, forwarded_for="192.0.2.80").status_code == 200
    ips = set(AuditEvent.objects.filter(action="oauth.client_authentication_failed").values_list("ip", flat=True))
    assert ips == {attacker}


def test_old_secret_works_only_during_the_rotation_overlap(urls, machine, settings):
    new_secret = clients.rotate_secret(machine.client)
    assert client_credentials(urls, machine.client_id, new_secret).status_code == 200
    assert client_credentials(urls, machine.client_id, machine.secret).status_code == 200  # overlap window
    machine.client.previous_secret_expires_at = timezone.now() - timedelta(seconds=1)
    machine.client.save()
    assert client_credentials(urls, machine.client_id, machine.secret).status_code == 401
    assert client_credentials(urls, machine.client_id, new_secret).status_code == 200

    settings.CLIENT_SECRET_OVERLAP_SECONDS = 0
    newest = clients.rotate_secret(machine.client)
    assert client_credentials(urls, machine.client_id, new_secret).status_code == 401
    assert client_credentials(urls, machine.client_id, newest).status_code == 200


def test_disabled_client_cannot_authenticate_and_its_tokens_stop(urls, machine, probe_api):
    token = client_credentials(urls, machine.client_id, machine.secret).json()["access_token"]
    clients.disable_client(machine.client)
    assert client_credentials(urls, machine.client_id, machine.secret).status_code == 401
    assert call_api(urls, token).status_code == 401


# --- private_key_jwt ----------------------------------------------------------------------


def test_private_key_jwt_replay_wrong_audience_long_expiry_and_foreign_key_are_refused(urls, fund):
    key = RSAKey.generate_key(2048)
    client, _ = make_client(fund, auth_method=AuthMethod.PRIVATE_KEY_JWT, jwks={"keys": [key.as_dict(private=False)]})

    def post(assertion):
        return requests.post(
            urls.token,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
            timeout=10,
        )

    assertion = private_key_jwt_sign(key, client.client_id, urls.token, expires_in=300)
    assert post(assertion).status_code == 200
    replay = post(assertion)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"

    assert post(private_key_jwt_sign(key, client.client_id, "https://elsewhere.example/token")).status_code == 400
    too_long = private_key_jwt_sign(key, client.client_id, urls.token, expires_in=6 * 3600)
    assert "too far ahead" in post(too_long).json()["error_description"]
    stranger = RSAKey.generate_key(2048)
    assert post(private_key_jwt_sign(stranger, client.client_id, urls.token)).status_code == 400
    # A private_key_jwt client has no secret to guess.
    assert client_credentials(urls, client.client_id, "").status_code == 401
    assert Token.objects.count() == 1


# --- authorization code and PKCE --------------------------------------------------------------


def test_missing_plain_or_methodless_pkce_is_refused(urls, tool, bob, browser_session_for):
    browser = browser_session_for(bob)
    for overrides in (
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge": "v" * 50, "code_challenge_method": "plain"},
        {"code_challenge_method": None},
    ):
        answer = browser.get(authorization_url(urls, tool.client_id, **overrides), allow_redirects=False)
        assert redirect_error(answer) == "invalid_request", overrides
    assert not tool.client.tokens.exists()


def test_wrong_or_missing_code_verifier_is_refused_and_burns_the_code(urls, tool, bob, browser_session_for):
    verifier = code_verifier()
    code = code_for(urls, tool, bob, browser_session_for, verifier)
    wrong = exchange(urls, tool, code, code_verifier())
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert exchange(urls, tool, code, verifier).status_code == 400  # the code was spent on the failed attempt

    another = code_for(urls, tool, bob, browser_session_for, verifier)
    missing = exchange(urls, tool, another, None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert not Token.objects.exists()


def test_replayed_authorization_code_revokes_what_it_issued(urls, tool, bob, browser_session_for, probe_api):
    verifier = code_verifier()
    code = code_for(urls, tool, bob, browser_session_for, verifier, scope="query")
    first = exchange(urls, tool, code, verifier)
    assert first.status_code == 200
    assert call_api(urls, first.json()["access_token"]).status_code == 200

    replay = exchange(urls, tool, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert call_api(urls, first.json()["access_token"]).status_code == 401
    refresh = requests.post(
        urls.token,
        data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        auth=(tool.client_id, tool.secret),
        timeout=10,
    )
    assert refresh.json()["error"] == "invalid_grant"
    assert AuditEvent.objects.filter(action="oauth.authorization_code_replayed").count() == 1


def test_codes_are_bound_to_their_client(urls, tool, fund, bob, browser_session_for):
    verifier = code_verifier()
    code = code_for(urls, tool, bob, browser_session_for, verifier)
    other, other_secret = make_tool_client(fund)
    stolen = requests.post(
        urls.token,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(other.client_id, other_secret),
        timeout=10,
    )
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_exactly(urls, tool, bob, browser_session_for):
    browser = browser_session_for(bob)
    for uri in (
        "http://127.0.0.1:8765/callback/../evil",
        REDIRECT_URI + "x",
        REDIRECT_URI + "?next=https://evil.example",
        "https://evil.example/callback",
        None,
    ):
        answer = browser.get(authorization_url(urls, tool.client_id, redirect_uri=uri), allow_redirects=False)
        assert answer.status_code == 400, uri  # shown to the user; never redirected to an unregistered URI
        assert "Location" not in answer.headers

    verifier = code_verifier()
    code = code_for(urls, tool, bob, browser_session_for, verifier)
    mismatch = exchange(urls, tool, code, verifier, redirect_uri="http://127.0.0.1:8765/other")
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_grant"


def test_implicit_and_password_grants_do_not_exist(urls, tool, bob, browser_session_for):
    implicit = browser_session_for(bob).get(
        authorization_url(urls, tool.client_id, response_type="token"), allow_redirects=False
    )
    assert redirect_error(implicit) == "unsupported_response_type"
    password = requests.post(
        urls.token,
        data={"grant_type": "password", "username": bob.username, "password": "x"},
        auth=(tool.client_id, tool.secret),
        timeout=10,
    )
    assert password.status_code == 400 and password.json()["error"] == "unsupported_grant_type"


def test_only_members_with_a_role_that_allows_the_scopes_can_consent(urls, tool, carol, dave, browser_session_for):
    outsider = browser_session_for(dave).get(authorization_url(urls, tool.client_id), allow_redirects=False)
    assert outsider.status_code == 403 and "only its members" in outsider.text
    viewer = browser_session_for(carol).get(
        authorization_url(urls, tool.client_id, scope="query"), allow_redirects=False
    )
    assert viewer.status_code == 403 and "cannot grant: query" in viewer.text
    assert (
        browser_session_for(carol).get(authorization_url(urls, tool.client_id, scope="catalog:read")).status_code == 200
    )


def test_consent_needs_the_csrf_token(urls, tool, bob, browser_session_for):
    browser = browser_session_for(bob)
    url = authorization_url(urls, tool.client_id)
    browser.get(url)
    forged = browser.post(url, data={"decision": "allow"}, allow_redirects=False)
    assert forged.status_code == 403
    assert "Location" not in forged.headers


# --- scopes --------------------------------------------------------------------------------


def test_scope_escalation_is_refused_everywhere(urls, fund, bob, browser_session_for):
    narrow, narrow_secret = make_client(fund, scope="catalog:read")
    escalated = client_credentials(urls, narrow.client_id, narrow_secret, scope="catalog:read query")
    assert escalated.status_code == 400 and escalated.json()["error"] == "invalid_scope"
    assert client_credentials(urls, narrow.client_id, narrow_secret, scope="root").json()["error"] == "invalid_scope"

    tool_client, tool_secret = make_tool_client(fund, scope="catalog:read query")
    tool = type("Tool", (), {"client_id": tool_client.client_id, "secret": tool_secret})
    browser = browser_session_for(bob)
    beyond = browser.get(authorization_url(urls, tool.client_id, scope="catalog:read download"), allow_redirects=False)
    assert redirect_error(beyond) == "invalid_scope"

    verifier = code_verifier()
    granted = exchange(urls, tool, code_for(urls, tool, bob, browser_session_for, verifier), verifier).json()
    assert granted["scope"] == "catalog:read"
    wider = requests.post(
        urls.token,
        data={"grant_type": "refresh_token", "refresh_token": granted["refresh_token"], "scope": "catalog:read query"},
        auth=(tool.client_id, tool.secret),
        timeout=10,
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


# --- institution suspension -----------------------------------------------------------------


def test_suspension_stops_tokens_at_once_and_reinstatement_restores_only_the_clients(urls, machine, fund, probe_api):
    token = client_credentials(urls, machine.client_id, machine.secret).json()["access_token"]
    assert call_api(urls, token).status_code == 200

    lifecycle.change_status(fund, InstitutionStatus.SUSPENDED, reason="Unpaid invoices.")
    stopped = call_api(urls, token)
    assert stopped.status_code == 401 and 'error="invalid_token"' in stopped.headers["WWW-Authenticate"]
    refused = client_credentials(urls, machine.client_id, machine.secret)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    assert AuditEvent.objects.filter(action="oauth.institution_tokens_revoked").count() == 1

    lifecycle.change_status(fund, InstitutionStatus.APPROVED, reason="Paid.")
    fresh = client_credentials(urls, machine.client_id, machine.secret)
    assert fresh.status_code == 200
    assert call_api(urls, fresh.json()["access_token"]).status_code == 200
    assert call_api(urls, token).status_code == 401  # revoked tokens stay revoked


def test_a_suspended_institutions_token_fails_on_the_next_request_even_unrevoked(urls, machine, fund, probe_api):
    """The status check at authentication time does not depend on the revocation having run."""
    token = client_credentials(urls, machine.client_id, machine.secret).json()["access_token"]
    type(fund).objects.filter(pk=fund.pk).update(status=InstitutionStatus.SUSPENDED)  # bypass the lifecycle on purpose
    assert call_api(urls, token).status_code == 401


def test_pending_or_suspended_institutions_cannot_start_authorizations(urls, tool, fund, bob, browser_session_for):
    lifecycle.change_status(fund, InstitutionStatus.SUSPENDED, reason="Investigation.")
    answer = browser_session_for(bob).get(authorization_url(urls, tool.client_id), allow_redirects=False)
    assert answer.status_code == 400 and "not active" in answer.text


def test_removing_a_member_revokes_the_tokens_their_tools_hold(
    urls, tool, fund, bob, alice, browser_session_for, probe_api
):
    from institutions import members

    verifier = code_verifier()
    granted = exchange(urls, tool, code_for(urls, tool, bob, browser_session_for, verifier, scope="query"), verifier)
    access_token = granted.json()["access_token"]
    assert call_api(urls, access_token).status_code == 200
    members.remove(fund.members.get(user=bob), by=alice)
    assert call_api(urls, access_token).status_code == 401
