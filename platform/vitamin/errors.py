"""One error format for everything under /api/:

    {"error": {"code": "...", "message": "...", "request_id": "..."}}

Domain code raises `vitamin.refusals.Refusal` (a code, a message, a kind, no HTTP); views
raise `ApiError` for what is HTTP's own (a malformed request, a missing scope, a range).
Both, DRF's own exceptions, unknown routes and server errors leave in the same shape, and
a refusal's kind becomes its HTTP status, here and nowhere else (`HTTP_STATUS`).

Every other path is a portal page and gets a page in the site's look, rendered by Django's
own default views from the portal's templates (portal/templates/400.html, 403.html,
403_csrf.html, 404.html, 500.html). Those views render 400, 500 and the CSRF failure without the
request and with an empty context, so those pages (portal/errors/plain.html) need neither a
user, nor the database, nor URL reversing: an error page cannot fail for the request's reason.

A service the request needs that does not answer (the database, the Redis of the quota counters, the
Celery broker) is an outage, not a bug: wherever it surfaces (a view, a middleware, the authentication),
the answer is 503 with a stable code and a `Retry-After` (`outage_refusal`), in the API's shape or as the
site's 503 page. So is a refusal of kind UNAVAILABLE that no view answered (`vitamin.queueing.QueueUnavailable`).
"""

from __future__ import annotations

import logging
import math
import sys
from datetime import datetime

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.template import loader
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from rest_framework import exceptions, status
from rest_framework.response import Response

from vitamin.refusals import Kind, Refusal
from vitamin.request_context import get_request_id

log = logging.getLogger("vitamin.errors")


class ApiError(exceptions.APIException):
    """An error a client can act on: stable `code`, readable `message`, the right status."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, status_code: int | None = None, details=None, headers=None
    ):
        super().__init__(detail=message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.details = details
        self.headers = headers or {}


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_token",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid_request",
}


HTTP_STATUS: dict[Kind, int] = {
    Kind.INVALID: 400,
    Kind.FORBIDDEN: 403,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.GONE: 410,
    Kind.TOO_LARGE: 413,
    Kind.LIMIT_REACHED: 429,
    Kind.TIMED_OUT: 408,
    Kind.UNAVAILABLE: 503,
    Kind.FAILED: 500,
}


def status_of(refusal: Refusal) -> int:
    return HTTP_STATUS[refusal.kind]


def refusal_headers(refusal: Refusal) -> dict[str, str]:
    """Retry-After (always on a 503), and for a quota the RateLimit-* fields (draft-ietf-httpapi-ratelimit-headers) from its details."""
    headers = {}
    details = refusal.details if isinstance(refusal.details, dict) else {}
    if refusal.kind is Kind.LIMIT_REACHED and "limit" in details and "remaining" in details:
        headers["RateLimit-Limit"] = str(details["limit"])
        headers["RateLimit-Remaining"] = str(details["remaining"])
        if details.get("reset_at"):
            reset = datetime.fromisoformat(details["reset_at"])
            headers["RateLimit-Reset"] = str(max(0, math.ceil((reset - timezone.now()).total_seconds())))
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(int(refusal.retry_after))
    elif refusal.kind is Kind.UNAVAILABLE:  # every 503 says when to try again (RFC 9110, 15.6.4)
        headers["Retry-After"] = str(settings.OUTAGE_RETRY_AFTER_SECONDS)
    return headers


# What each outage answers: the exceptions that mean a service did not answer (psycopg's and sqlite3's
# OperationalError, also a lock wait that ran out, reach Django as its own; a connection already
# closed is an InterfaceError), the code, and what the message names.
_OUTAGES = (
    ((OperationalError, InterfaceError), "database_unavailable", "The database"),
    ((redis.ConnectionError, redis.TimeoutError), "quota_unavailable", "The quota service"),
    # A task queued without vitamin.queueing.send_task (which raises QueueUnavailable instead).
    ((BrokerError,), "queue_unavailable", "The task queue"),
)


def outage_refusal(exc: BaseException | None) -> Refusal | None:
    """The 503 refusal for an exception that says a service is not answering; None for any other."""
    if isinstance(exc, Refusal) and exc.kind is Kind.UNAVAILABLE:
        return exc
    for types, code, what in _OUTAGES:
        if isinstance(exc, types):
            return Refusal(
                f"{what} is not answering right now, so this request was not completed. Try again shortly.",
                code=code,
                kind=Kind.UNAVAILABLE,
                retry_after=settings.OUTAGE_RETRY_AFTER_SECONDS,
            )
    return None


def refusal_response(refusal: Refusal) -> Response:
    """The API's answer to a refusal."""
    return Response(
        error_body(refusal.code, refusal.message, refusal.details),
        status=status_of(refusal),
        headers=refusal_headers(refusal),
    )


def error_body(code: str, message: str, details=None) -> dict:
    body = {"code": code, "message": message, "request_id": get_request_id()}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(code: str, message: str, status_code: int, details=None) -> JsonResponse:
    return JsonResponse(
        error_body(code, message, details), status=status_code, json_dumps_params={"ensure_ascii": False}
    )


def api_exception_handler(exc, context):
    """DRF exception handler: every API error leaves in the one format."""
    if isinstance(exc, Refusal):
        return refusal_response(exc)
    if (outage := outage_refusal(exc)) is not None:
        log.warning("%s: %s", outage.code, exc, exc_info=exc)
        return refusal_response(outage)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django's handler500 answers in the same format and logs it

    headers = dict(getattr(exc, "headers", None) or {})
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.details)
    elif isinstance(exc, exceptions.ValidationError):
        body = error_body("invalid_request", _validation_message(exc.detail), exc.detail)
    else:
        body = error_body(error_code(exc), str(exc.detail))
    return Response(body, status=exc.status_code, headers=headers)


def error_code(exc: exceptions.APIException | Refusal) -> str:
    """The stable code an API error answers with."""
    if isinstance(exc, ApiError | Refusal):
        return exc.code
    if isinstance(exc, exceptions.ValidationError):
        return "invalid_request"
    return next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None) or str(
        getattr(exc, "default_code", "error")
    )


def _validation_message(detail) -> str:
    if isinstance(detail, dict):
        parts = []
        for field, problems in detail.items():
            text = "; ".join(str(p) for p in problems) if isinstance(problems, list) else str(problems)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return " ".join(parts) or "The request is invalid."
    if isinstance(detail, list):
        return "; ".join(str(p) for p in detail)
    return str(detail)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def handler404(request, exception=None):
    if request.path.startswith("/delta-sharing/"):  # the protocol's error shape (docs/sharing.md)
        body = {"errorCode": "RESOURCE_DOES_NOT_EXIST", "message": f"Nothing at {request.path}.", "code": "not_found"}
        return JsonResponse(body, status=404)
    if _is_api(request):
        return error_response("not_found", f"No API endpoint at {request.path}.", 404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    # Django calls this while handling the exception (any middleware's, or a view's that no handler
    # answered), and has logged it already.
    if (outage := outage_refusal(sys.exc_info()[1])) is not None:
        return outage_response(request, outage)
    if _is_api(request):
        return error_response(
            "internal_error", "The server failed to handle this request. Quote the request id when reporting it.", 500
        )
    from django.views.defaults import server_error

    return server_error(request)


def outage_response(request, outage: Refusal, *, page_message: str = ""):
    """503 with Retry-After: the API's error shape (Delta Sharing's under /delta-sharing/, OAuth's at its JSON
    endpoints), or the site's 503 page (rendered without the request or the database, like the 500 page),
    which says `page_message` (in the page's language) instead of its general text when given."""
    if _is_api(request):
        response = error_response(outage.code, outage.message, status_of(outage))
    elif request.path.startswith("/delta-sharing/"):  # the protocol's shape, as sharing.views answers a 503
        body = {"errorCode": "INTERNAL_ERROR", "message": outage.message, "code": outage.code}
        response = JsonResponse({**body, "request_id": get_request_id()}, status=status_of(outage))
    elif request.path.startswith(("/oauth/", "/.well-known/")) and request.path != "/oauth/authorize":
        body = {"error": "temporarily_unavailable", "error_description": outage.message}  # RFC 6749's shape
        response = JsonResponse(body, status=status_of(outage))
    else:
        page = loader.get_template("503.html").render({"message": page_message})
        response = HttpResponse(page, status=status_of(outage))
    for name, value in refusal_headers(outage).items():
        response[name] = value
    return response


def handler400(request, exception=None):
    if _is_api(request):
        return error_response("bad_request", "The request could not be understood.", 400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def handler403(request, exception=None):
    if _is_api(request):
        return error_response("permission_denied", "You do not have permission to do this.", 403)
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)
