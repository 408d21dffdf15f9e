"""The OAuth tests' additions to the suite's cast (the table in tests/catalog_support.py).

Here the fund also has carol as its viewer. The fund's "tool" client acts for members
(authorization code, refresh), its "machine" client acts for itself (client credentials).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import requests
from django.conf import settings
from django.test import Client as DjangoClient
from partner_support import add_member, make_client, make_institution, make_tool_client, make_user, probe_urlconf

from institutions.models import Role


@pytest.fixture
def carol(db):
    return make_user("carol@fund.example")


@pytest.fixture
def fund(alice, bob, carol):
    institution = make_institution("Demo Fund Management Co.", 1, owner=alice)
    add_member(institution, bob, Role.ANALYST)
    add_member(institution, carol, Role.VIEWER)
    return institution


@pytest.fixture
def machine(fund):
    client, secret = make_client(fund, name="Index rebalancer")
    return SimpleNamespace(client=client, client_id=client.client_id, secret=secret)


@pytest.fixture
def tool(fund):
    client, secret = make_tool_client(fund)
    return SimpleNamespace(client=client, client_id=client.client_id, secret=secret)


@pytest.fixture
def urls(live_server):
    base = live_server.url
    return SimpleNamespace(
        base=base,
        authorize=f"{base}/oauth/authorize",
        token=f"{base}/oauth/token",
        revoke=f"{base}/oauth/revoke",
        introspect=f"{base}/oauth/introspect",
        register=f"{base}/oauth/register",
        metadata=f"{base}/.well-known/oauth-authorization-server",
    )


@pytest.fixture
def browser_session_for(live_server):
    """requests sessions that carry a member's portal session cookie, as their browser would."""
    sessions = []

    def signed_in(user) -> requests.Session:
        django_client = DjangoClient()
        django_client.force_login(user)
        session = requests.Session()
        session.cookies.set(settings.SESSION_COOKIE_NAME, django_client.cookies[settings.SESSION_COOKIE_NAME].value)
        sessions.append(session)
        return session

    yield signed_in
    for session in sessions:
        session.close()


@pytest.fixture
def probe_api(settings):
    """Adds /api/v1/probe/query (scope query) and /api/v1/probe/catalog (scope catalog:read)."""
    settings.ROOT_URLCONF = probe_urlconf()
