"""Building blocks for institution and OAuth tests: people, institutions, clients, PKCE values.

A plain module (tests/ is on sys.path): tests/catalog_support.py builds the suite's cast
from these (who is who is its docstring's table), and tests/oauth/conftest.py adds to it.
"""

from __future__ import annotations

import base64
import re

from authlib.common.security import generate_token
from django.contrib.auth import get_user_model

from institutions import lifecycle
from institutions.credit_code import check_character
from institutions.models import Institution, InstitutionStatus, InstitutionType, Member, Role
from oauth.clients import create_client
from oauth.models import GrantType
from oauth.scopes import ALL_SCOPES

PASSWORD = "correct horse battery staple 9"
REDIRECT_URI = "http://127.0.0.1:8765/callback"


def credit_code(number: int) -> str:
    """A valid unified social credit code, distinct for each number."""
    base = f"91330100{number:09d}"
    return base + check_character(base)


def make_user(email: str, *, staff: bool = False, name: str = ""):
    return get_user_model().objects.create_user(
        username=email, email=email, password=PASSWORD, is_staff=staff, first_name=name or email.split("@")[0]
    )


def make_institution(
    name: str, number: int, *, owner=None, status: str = InstitutionStatus.APPROVED, type=InstitutionType.FUND_COMPANY
) -> Institution:
    institution = lifecycle.file_application(
        applicant=owner,
        legal_name=name,
        type=type,
        credit_code=credit_code(number),
        contact_name="Contact",
        contact_email=f"contact{number}@example.com",
    )
    if status != InstitutionStatus.PENDING:
        lifecycle.change_status(institution, InstitutionStatus.APPROVED, reason="Approved for the test.")
    if status in (InstitutionStatus.SUSPENDED, InstitutionStatus.CLOSED):
        lifecycle.change_status(institution, status, reason="For the test.")
    institution.refresh_from_db()
    return institution


def add_member(institution: Institution, user, role: str = Role.ANALYST) -> Member:
    return Member.objects.create(user=user, institution=institution, role=role)


def make_client(
    institution: Institution,
    *,
    name: str = "Test client",
    scope: str = " ".join(ALL_SCOPES),
    grant_types=(GrantType.CLIENT_CREDENTIALS,),
    redirect_uris=(),
    **kwargs,
):
    """(client, secret)"""
    return create_client(
        institution, name=name, scope=scope, grant_types=list(grant_types), redirect_uris=list(redirect_uris), **kwargs
    )


def make_tool_client(institution: Institution, **kwargs):
    """A client for a tool acting for members: authorization code + refresh token."""
    return make_client(
        institution,
        name="Quant tool",
        grant_types=(GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN, GrantType.CLIENT_CREDENTIALS),
        redirect_uris=(REDIRECT_URI,),
        **kwargs,
    )


def code_verifier() -> str:
    return generate_token(64)


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def give_consent(browser, authorization_url: str, decision: str = "allow"):
    """Open the consent screen in a signed-in requests session and press Allow (or Deny).

    Returns the server's answer to the POST, not followed: a redirect to the client.
    """
    page = browser.get(authorization_url, allow_redirects=False)
    assert page.status_code == 200, page.text[:500]
    return browser.post(
        authorization_url,
        data={"csrfmiddlewaretoken": csrf_token_from(page.text), "decision": decision},
        allow_redirects=False,
    )


def probe_urlconf():
    """The real routes plus two small protected API views, as the /api/v1/ views will use the OAuth classes.

    Use as settings.ROOT_URLCONF (Django accepts a module-like object there).
    """
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from audit.service import record
    from oauth.authentication import BearerTokenAuthentication
    from oauth.permissions import HasScope, require_scope
    from vitamin.urls import urlpatterns

    class QueryProbe(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes = [require_scope("query")]

        def get(self, request):
            record("probe.query", request=request)
            return Response(
                {
                    "user": request.user.get_username(),
                    "client_id": request.auth_client.client_id,
                    "institution_id": request.auth_client.institution_id,
                    "scopes": sorted(request.auth.scopes),
                }
            )

    class CatalogProbe(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes = [HasScope]
        required_scope = "catalog:read"

        def get(self, request):
            return Response({"ok": True})

    class ProbeUrls:
        pass

    ProbeUrls.urlpatterns = [
        path("api/v1/probe/query", QueryProbe.as_view()),
        path("api/v1/probe/catalog", CatalogProbe.as_view()),
        *urlpatterns,
    ]
    return ProbeUrls


def basic_auth(client_id: str, secret: str) -> str:
    """An HTTP Basic Authorization header value (client_secret_basic)."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def sign_in_browser(page, base: str, user, next_path: str) -> None:
    """Sign `user` in on the portal's sign-in page in a real browser and land on `next_path`."""
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}{next_path}")
