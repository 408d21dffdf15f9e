"""Error pages: the site's look for portal paths (400, 403, 404, 500, a CSRF failure), JSON for API paths,
and a favicon."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.template import loader
from partner_support import make_user

from portal import views as portal_views

BRAND = '<a class="brand" href="/">Vitamin</a>'

pytestmark = pytest.mark.django_db


def test_a_missing_portal_page_is_the_sites_404(client):
    response = client.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert BRAND in html and "Page not found" in html and "<code>/no/such/page/</code>" in html
    assert 'href="/catalog/"' in html


def test_a_missing_object_on_a_portal_page_is_the_sites_404(client, demo_datasets):
    client.force_login(make_user("olga@vitamin.example", staff=True))
    response = client.get("/staff/datasets/no_such_dataset/")
    assert response.status_code == 404 and BRAND in response.content.decode()
    assert 'href="/staff/">Staff</a>' in response.content.decode(), "the 404 page keeps the signed-in nav"


def test_api_paths_keep_their_json_errors(client):
    response = client.get("/api/v1/no-such-endpoint/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    sharing = client.get("/delta-sharing/no-such-endpoint")
    assert sharing.status_code == 404 and sharing.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"


def test_a_failing_portal_page_is_the_sites_500_without_a_stack_trace(client, monkeypatch, settings):
    assert settings.DEBUG is False

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(portal_views, "render", broken)
    client.raise_request_exception = False
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 500
    assert BRAND in html and "Something went wrong on our side" in html
    assert "secret internals" not in html and "Traceback" not in html


def test_error_pages_without_a_request_render_from_an_empty_context():
    """Django renders 400, 500 and the CSRF failure with no request and no context: nothing may need either."""
    for name in ("500.html", "400.html", "403_csrf.html"):
        html = loader.get_template(name).render()
        assert BRAND in html and "/static/portal/vitamin.css" in html, name


def test_a_bad_request_is_the_sites_400(client):
    response = client.get("/", HTTP_HOST="not-a-host-we-serve.example")
    assert response.status_code == 400 and BRAND in response.content.decode()
    assert "could not be understood" in response.content.decode()


def test_the_favicon_answers(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/portal/favicon.svg"
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)
    assert finders.find("portal/favicon.svg")
    assert '<link rel="icon" href="/static/portal/favicon.svg"' in client.get("/").content.decode()
