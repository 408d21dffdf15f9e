"""Domain refusals: what the platform says when it will not do something, without any HTTP.

Services (subscriptions, the access decision, metering, the query service, jobs) raise a
`Refusal`: a stable `code` a program can act on, a `message` a person understands, optional
`details`, and a `kind` that says what sort of refusal it is. The kind, not the service,
decides the HTTP status, in one place (`vitamin.errors`); the portal's views render the same
refusal as a message on the page, Celery tasks and commands log or print it.

    raise Refusal("The job has already finished.", code="job_finished", kind=Kind.CONFLICT)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    INVALID = "invalid"  # the request must change
    FORBIDDEN = "forbidden"  # not for this caller
    NOT_FOUND = "not_found"  # no such thing, for this caller
    CONFLICT = "conflict"  # not in the state it is in now
    GONE = "gone"  # it existed, and no longer does
    TOO_LARGE = "too_large"  # more than a limit on one request allows
    LIMIT_REACHED = "limit_reached"  # a quota: `retry_after` says when to try again
    TIMED_OUT = "timed_out"  # it ran past its time limit
    UNAVAILABLE = "unavailable"  # our side, for now: try again later
    FAILED = "failed"  # our side: a fault, logged

    @property
    def ours(self) -> bool:
        """The platform's side, not the caller's."""
        return self in (Kind.UNAVAILABLE, Kind.FAILED)


class Refusal(Exception):
    """A refusal the caller can act on. `retry_after` (seconds) when trying again later can succeed."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        kind: Kind = Kind.INVALID,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = Kind(kind)
        self.details = details
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, kind={self.kind.value!r}, message={self.message!r})"
