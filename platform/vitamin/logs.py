"""Log formatting: JSON lines for machines, plain text on a terminal; every line carries the request id."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from vitamin.request_context import get_request_id

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or get_request_id(),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
        if extra:
            entry["extra"] = extra
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter_for(log_format: str = "auto") -> logging.Formatter:
    if log_format == "json" or (log_format == "auto" and not sys.stderr.isatty()):
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")


def loggable_path(request) -> str:
    """The request's path with any URL argument named `token` (a credential: a signed download
    link, an e-mail verification, an invitation) replaced by `<token>`."""
    match = getattr(request, "resolver_match", None)
    token = match.kwargs.get("token") if match is not None else None
    return request.path.replace(str(token), "<token>") if token else request.path


class TokenRedactingFilter(logging.Filter):
    """Keeps URL tokens out of django.request's lines (it logs the path of every 4xx and 5xx)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if path is not None:
            redacted = loggable_path(request)
            if redacted != path:
                record.args = tuple(redacted if arg == path else arg for arg in record.args or ())
                record.request = f"<{type(request).__name__}: {request.method} {redacted!r}>"
        return True
