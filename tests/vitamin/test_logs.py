"""Structured logs carry the request id."""

import json
import logging

import pytest

from vitamin.logs import TOKEN_ROUTE_PREFIXES, JsonFormatter, RequestIdFilter, formatter_for
from vitamin.request_context import reset_request_id, set_request_id


def test_json_lines_carry_request_id_and_extras():
    record = logging.makeLogRecord(
        {"name": "vitamin.test", "levelname": "INFO", "msg": "ran %s", "args": ("q",), "rows": 3}
    )
    token = set_request_id("req-abcdef12")
    try:
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        reset_request_id(token)
    assert line["message"] == "ran q"
    assert line["request_id"] == "req-abcdef12"
    assert line["extra"] == {"rows": 3}


def test_access_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="vitamin.access"):
        response = client.get("/healthz", HTTP_X_REQUEST_ID="req-access-01")
    records = [r for r in caplog.records if r.name == "vitamin.access"]
    assert len(records) == 1
    assert records[0].status == 200 and records[0].path == "/healthz"
    assert records[0].request_id == response["X-Request-ID"] == "req-access-01"


def _formatted(records) -> str:
    """The records as Vitamin's own handler writes them, in both formats."""
    return "\n".join(
        formatter.format(record) for formatter in (formatter_for("json"), formatter_for("text")) for record in records
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/job-results/{secret}",  # resolves: 404 link_invalid
        "/api/v1/job-results/{secret}/",  # does not resolve: Django's 404
        "/accounts/verify/{secret}",  # redirected to the slash
        "/invitations/{secret}/",
    ],
)
def test_a_token_in_the_url_never_reaches_a_log_line(client, caplog, path, db):  # db: a refused link is audited
    secret = "aSignedDownloadLinkToken:1xWEfg:N1DYw0FSmcQYMa4vgCxvoa"
    with caplog.at_level(logging.INFO):
        client.get(path.format(secret=secret))
    assert any(r.name == "vitamin.access" for r in caplog.records)
    lines = _formatted(caplog.records)
    assert secret not in lines and "<token>" in lines


def test_a_token_refused_by_csrf_checks_stays_out_of_the_log(caplog):
    from django.test import Client

    secret = "invitation-token-that-must-not-be-logged"
    with caplog.at_level(logging.INFO):
        Client(enforce_csrf_checks=True).post(f"/invitations/{secret}/")
    assert any(r.name == "django.security.csrf" for r in caplog.records)
    assert secret not in _formatted(caplog.records)


def test_every_route_with_a_token_argument_is_redacted():
    from django.urls import URLPattern, URLResolver, get_resolver

    def routes(patterns, prefix="/"):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from routes(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                yield route

    with_tokens = {route.split("<")[0] for route in routes(get_resolver().url_patterns) if ":token>" in route}
    assert with_tokens and with_tokens <= set(TOKEN_ROUTE_PREFIXES)
