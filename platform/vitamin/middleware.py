"""Request id for every request (taken from X-Request-ID when safe, echoed on the response), an access log line,
and the request's own scope of remembered values (`vitamin.request_context.scoped`)."""

from __future__ import annotations

import logging
import time

from vitamin.client_ip import client_ip
from vitamin.request_context import close_scope, new_request_id, open_scope, reset_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-ID"
access_log = logging.getLogger("vitamin.access")


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id(request.headers.get(REQUEST_ID_HEADER))
        token = set_request_id(request.request_id)
        scope = open_scope()  # what the request remembers for itself (vitamin.request_context.scoped)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request.request_id
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "client_ip": client_ip(request),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            return response
        finally:
            close_scope(scope)
            reset_request_id(token)
