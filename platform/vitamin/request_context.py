"""The id of the request (or task) being handled, shared by logs, audit events and Celery."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("vitamin_request_id", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_request_id(offered: str | None = None) -> str:
    """Accept a caller's id when it is short and harmless; otherwise mint one."""
    if offered and _SAFE_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None):
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)


# What one request remembers for its own duration (`scoped`): opened and closed by RequestIdMiddleware.
_scope: ContextVar[dict | None] = ContextVar("vitamin_request_scope", default=None)


def open_scope():
    """Start a request's scope (a token for `close_scope`)."""
    return _scope.set({})


def close_scope(token) -> None:
    _scope.reset(token)


def scoped(key, compute):
    """`compute()`, remembered under `key` until the request ends; outside a request, computed every time."""
    scope = _scope.get()
    if scope is None:
        return compute()
    if key not in scope:
        scope[key] = compute()
    return scope[key]
