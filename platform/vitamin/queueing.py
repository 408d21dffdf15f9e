"""Queueing a Celery task: a broker that does not take the message is an outage, not a bug.

    result = send_task("catalog.refresh_dataset", args=[run.pk])

Celery's `send_task`, by name, except that a broker that did not take the message raises
`QueueUnavailable`: a `Refusal` with code `queue_unavailable` and kind UNAVAILABLE, which the API
answers as 503 with a `Retry-After` and a page as the site's 503 page (`vitamin.errors`). A Redis
or RabbitMQ broker that does not answer raises kombu's OperationalError (after Celery's few publish
retries, under a second for a refused connection); the embedded file-system queue raises the OSError
of a folder it cannot write (missing, not writable, a full disk).

The caller decides what becomes of what it wrote for the task before queueing it: nothing may stay
looking queued with no message on its way to a worker (`catalog.refresh.request_refresh` fails its run).
"""

from __future__ import annotations

import logging

from celery import current_app
from celery.result import AsyncResult
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

from vitamin.refusals import Kind, Refusal

log = logging.getLogger("vitamin.queueing")

# What publishing raises when the broker did not take the message.
QUEUE_ERRORS = (BrokerError, OSError)


class QueueUnavailable(Refusal):
    """The broker did not take the task's message: nothing was queued."""

    def __init__(self, task: str, cause: BaseException, *, details: dict | None = None):
        super().__init__(
            "The task queue is not answering right now, so the work was not queued. Try again shortly.",
            code="queue_unavailable",
            kind=Kind.UNAVAILABLE,
            details=details,
            retry_after=settings.OUTAGE_RETRY_AFTER_SECONDS,
        )
        self.task = task
        self.cause = f"{type(cause).__name__}: {cause}"


def send_task(name: str, *, args=(), **options) -> AsyncResult:
    """Queue task `name` with `args` (Celery's options: expires, countdown...); QueueUnavailable when the broker
    did not take it."""
    try:
        return current_app.send_task(name, args=args, **options)
    except QUEUE_ERRORS as exc:
        log.warning("the task queue did not take %s: %s: %s", name, type(exc).__name__, exc)
        raise QueueUnavailable(name, exc) from exc
