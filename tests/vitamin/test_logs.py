"""Structured logs carry the request id."""

import json
import logging

from vitamin.logs import JsonFormatter, RequestIdFilter
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


def test_a_token_in_the_url_never_reaches_the_access_log(client, caplog):
    secret = "aSignedDownloadLinkToken:1xWEfg:N1DYw0FSmcQYMa4vgCxvoa"
    with caplog.at_level(logging.INFO, logger="vitamin.access"):
        client.get(f"/api/v1/job-results/{secret}")
    [record] = [r for r in caplog.records if r.name == "vitamin.access"]
    assert record.path == "/api/v1/job-results/<token>" and record.status == 404
    assert secret not in caplog.text
