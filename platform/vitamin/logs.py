"""Log formatting: JSON lines for machines, plain text on a terminal; every line carries the request id.

Every line is also passed through `redact_tokens`: URLs whose path carries a credential (a
signed download link, an e-mail verification, an invitation) are written with `<token>`
in its place, wherever they appear: the message, its extras, a traceback. Done on the
formatted line, so no logger (Django's request and security loggers included) can leak one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from vitamin.request_context import get_request_id

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_request_id() or "-"
        return True


# The path prefixes of every route whose URL carries a `token` argument (a test walks the
# URLconf to keep this list complete).
TOKEN_ROUTE_PREFIXES = ("/api/v1/job-results/", "/delta-sharing/files/", "/accounts/verify/", "/invitations/")
_TOKEN_IN_URL = re.compile("(" + "|".join(re.escape(prefix) for prefix in TOKEN_ROUTE_PREFIXES) + r")[^/?#\s'\"\\]+")


def redact_tokens(text: str) -> str:
    """`text` with the credential in any token-carrying URL path replaced by `<token>`."""
    return _TOKEN_IN_URL.sub(r"\1<token>", text)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_tokens(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_tokens(self._json(record))

    def _json(self, record: logging.LogRecord) -> str:
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
    return TextFormatter("%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s")
