"""Audit search filters: parse them from a query string, validate them, apply them to events.

The one place that reads audit filters: the partner API (`/api/v1/audit/events`), the partner's
audit trail page and the staff search page with its exports all call `AuditFilters.parse` and
`AuditFilters.apply`. A bad value is a `Refusal` with the stable code `invalid_request`,
naming the parameter; nothing here knows about HTTP.

    filters = AuditFilters.parse(request.GET, names=PARTNER_FILTERS)
    events = filters.apply(AuditEvent.objects.filter(institution=str(institution_id)))

Paging is by sequence number, newest first (`newest_first`): a page ends at `before_seq`, and the
next page's cursor is the last seq shown. Events appended meanwhile have higher seqs, so no event
is lost or repeated between pages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

from django.db.models import QuerySet

from audit.models import ActorType, AuditEvent
from vitamin.refusals import Kind, Refusal

# `action=query.run` matches that action; `action=query.` (ending in a dot) every action under it.
_ACTION = re.compile(r"(?=.{1,100}\Z)[a-z0-9_]+(\.[a-z0-9_]+)*\.?")
_OUTCOME = re.compile(r"[a-z0-9_]{1,32}")
_DATASET = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_SEQ = re.compile(r"[1-9][0-9]{0,17}")

ALL_FILTERS = (
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "institution",
    "dataset",
    "since",
    "until",
    "after_seq",
    "before_seq",
)
# What a partner may filter its own trail by: everything but the institution, which is always its own.
PARTNER_FILTERS = tuple(name for name in ALL_FILTERS if name != "institution")


def invalid(message: str) -> Refusal:
    return Refusal(message, code="invalid_request", kind=Kind.INVALID)


def refuse_unknown(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    """An API caller's misspelt filter must not silently widen its answer: refuse names not in `known`."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise invalid(f"Unknown parameter {unknown[0][:100]!r}; known: {', '.join(known)}.")


def parse_time(name: str, text: str) -> datetime:
    """An ISO-8601 date or time; UTC when it names no offset. ValueError names the parameter."""
    try:
        moment = datetime.fromisoformat(text)
        # In UTC, as the database compares it: an offset that pushes it past year 1 or 9999 is refused here.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{name} must be an ISO-8601 time (2025-03-01 or 2025-03-01T08:00:00Z), not {text[:100]!r}."
        ) from None


@dataclass(frozen=True)
class AuditFilters:
    """Validated filters; empty ones filter nothing. `since` is inclusive, `until`, `after_seq`, `before_seq` exclusive."""

    action: str = ""
    outcome: str = ""
    actor_type: str = ""
    actor_id: str = ""
    institution: str = ""
    dataset: str = ""
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None
    before_seq: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], *, names: tuple[str, ...] = ALL_FILTERS) -> AuditFilters:
        """Read `names` from `params` (a QueryDict or dict; blank values are no filter). Raises an invalid_request Refusal."""
        values = {}
        for name in names:
            text = (params.get(name) or "").strip()
            if not text:
                continue
            if "\x00" in text:
                raise invalid(f"{name} contains a NUL character.")
            try:
                values[name] = _PARSERS[name](name, text)
            except ValueError as exc:
                raise invalid(str(exc)) from None
        filters = cls(**values)
        if filters.since and filters.until and filters.since >= filters.until:
            raise invalid("since must be before until.")
        return filters

    def apply(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """`events` narrowed to those matching every filter (ordering unchanged)."""
        if self.action.endswith("."):
            events = events.filter(action__startswith=self.action)
        elif self.action:
            events = events.filter(action=self.action)
        for name in ("outcome", "actor_type", "actor_id", "institution"):
            if getattr(self, name):
                events = events.filter(**{name: getattr(self, name)})
        if self.dataset:
            # One element of the comma-separated target: dataset:SLUG, or dataset:SLUG@vN (a version).
            events = events.filter(target__regex=rf"(^|,)dataset:{self.dataset}(@[^,]*)?(,|$)")
        if self.since:
            events = events.filter(timestamp__gte=self.since)
        if self.until:
            events = events.filter(timestamp__lt=self.until)
        if self.after_seq is not None:
            events = events.filter(seq__gt=self.after_seq)
        if self.before_seq is not None:
            events = events.filter(seq__lt=self.before_seq)
        return events

    def as_params(self, *, without: tuple[str, ...] = ()) -> dict[str, str]:
        """The filters back as query parameters (for links to the next page or an export)."""
        params = {}
        for name, value in asdict(self).items():
            if name in without or value in ("", None):
                continue
            params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return params

    @property
    def active(self) -> bool:
        return any(getattr(self, field.name) not in ("", None) for field in fields(self))


def newest_first(events: QuerySet[AuditEvent], page_size: int) -> tuple[list[AuditEvent], int | None]:
    """One page, newest first, and the `before_seq` cursor of the next (None on the last page)."""
    page = list(events.order_by("-seq")[: page_size + 1])
    if len(page) <= page_size:
        return page, None
    return page[:page_size], page[page_size - 1].seq


def _text(limit: int):
    def parse(name: str, text: str) -> str:
        if len(text) > limit:
            raise ValueError(f"{name} is longer than {limit} characters.")
        return text

    return parse


def _matching(pattern: re.Pattern, shape: str):
    def parse(name: str, text: str) -> str:
        if not pattern.fullmatch(text):
            raise ValueError(f"{name} must be {shape}, not {text[:100]!r}.")
        return text

    return parse


def _actor_type(name: str, text: str) -> str:
    if text not in ActorType.values:
        raise ValueError(f"{name} must be one of {', '.join(ActorType.values)}.")
    return text


def _seq(name: str, text: str) -> int:
    if not _SEQ.fullmatch(text):
        raise ValueError(f"{name} must be a sequence number (a whole number from 1).")
    return int(text)


_PARSERS = {
    "action": _matching(_ACTION, "a dotted action name (query.run) or a prefix ending in a dot (query.)"),
    "outcome": _matching(_OUTCOME, "an outcome such as success, denied, failure or error"),
    "actor_type": _actor_type,
    "actor_id": _text(AuditEvent._meta.get_field("actor_id").max_length),
    "institution": _text(AuditEvent._meta.get_field("institution").max_length),
    "dataset": _matching(_DATASET, "a dataset slug"),
    "since": parse_time,
    "until": parse_time,
    "after_seq": _seq,
    "before_seq": _seq,
}
