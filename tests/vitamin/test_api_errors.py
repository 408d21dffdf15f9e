"""One error format for everything under /api/, and a request id on every response."""

import pytest
from django.urls import include, path

from vitamin.request_context import get_request_id


def _explode(request):
    raise RuntimeError("secret internal detail /srv/vitamin/store")


handler500 = "vitamin.errors.handler500"
urlpatterns = [
    path("api/v1/explode", _explode),
    path("", include("vitamin.urls")),
]


def assert_error_shape(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response["X-Request-ID"]
    return body


def test_unknown_api_route_is_json_404(client):
    assert_error_shape(client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_wrong_method_is_json_405(client):
    assert_error_shape(client.delete("/api/v1/status"), 405, "method_not_allowed")


def test_malformed_body_is_json_400(client):
    from rest_framework.decorators import api_view, permission_classes
    from rest_framework.permissions import AllowAny
    from rest_framework.test import APIRequestFactory

    @api_view(["POST"])
    @permission_classes([AllowAny])
    def echo(request):
        return request.data

    request = APIRequestFactory().post("/api/v1/echo", "{not json", content_type="application/json")
    response = echo(request)
    assert response.status_code == 400
    assert response.data["error"]["code"] == "malformed_request"


@pytest.mark.urls(__name__)
def test_server_error_is_json_500_without_internals(client):
    client.raise_request_exception = False
    body = assert_error_shape(client.get("/api/v1/explode"), 500, "internal_error")
    assert "/srv" not in str(body) and "RuntimeError" not in str(body)


def test_every_response_carries_a_request_id(client):
    for url in ("/healthz", "/api/v1/status", "/", "/no-such-page"):
        assert len(client.get(url)["X-Request-ID"]) >= 8


def test_caller_request_id_is_echoed_when_safe_and_replaced_when_not(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="trace-1234abcd")["X-Request-ID"] == "trace-1234abcd"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="x\r\nSet-Cookie: a=b" + "y" * 10)["X-Request-ID"]
    assert "\n" not in hostile and "Set-Cookie" not in hostile
    assert get_request_id() is None  # the context does not leak past the request


def test_html_pages_keep_html_errors(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- domain refusals: no HTTP in domain code, one mapping to a status ---------------------------


def test_every_kind_of_refusal_has_one_status_and_the_platform_side_is_5xx():
    from vitamin.errors import HTTP_STATUS
    from vitamin.refusals import Kind

    assert set(HTTP_STATUS) == set(Kind)
    for kind, status in HTTP_STATUS.items():
        assert 400 <= status < 600
        assert (status >= 500) == kind.ours, kind


def test_a_refusal_answers_in_the_error_format_with_its_status_and_retry_after():
    from vitamin.errors import api_exception_handler
    from vitamin.refusals import Kind, Refusal

    refusal = Refusal(
        "Slow down.",
        code="quota_exceeded",
        kind=Kind.LIMIT_REACHED,
        details={"metric": "queries", "limit": 5, "remaining": 0, "reset_at": "2999-01-01T00:00:00+00:00"},
        retry_after=30,
    )
    response = api_exception_handler(refusal, {})
    assert response.status_code == 429
    assert response.data["error"]["code"] == "quota_exceeded" and response.data["error"]["details"]["limit"] == 5
    assert response["Retry-After"] == "30" and response["RateLimit-Limit"] == "5"
    assert response["RateLimit-Remaining"] == "0" and int(response["RateLimit-Reset"]) > 0


def test_only_the_http_layer_builds_http_errors():
    """Domain code raises `Refusal`; `ApiError` (an HTTP exception) is built only by views and HTTP helpers."""
    import ast

    from testenv import REPO_DIR

    http_layer = {"views.py", "api.py", "permissions.py", "errors.py", "ranges.py", "parsers.py", "authentication.py"}
    builders = set()
    for source in (REPO_DIR / "platform").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError":
                builders.add(source.relative_to(REPO_DIR / "platform").as_posix())
    assert builders, "the scan found no ApiError at all: it is not looking in the right place"
    assert {path for path in builders if path.rsplit("/", 1)[-1] not in http_layer} == set()
