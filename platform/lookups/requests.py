"""Reading lookup and cohort request bodies: plain functions, fast enough for 100,000 items.

A malformed request (a missing transaction id, an item that is not an object, a date that
does not parse) is refused whole: a Refusal (400 invalid_request) naming the place, never
the value. A well-formed item whose consent is missing, expired or out of scope, or whose
identifier is not one, is refused on its own in the answer (`Item.refusal`), and the rest
of the batch is answered.

The shapes are documented in docs/lookup.md and, for the OpenAPI schema, by the
serializers in lookups/views.py.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from datasets.identifiers import IDENTIFIER_KINDS, InvalidIdentifier, check_digest, digest, normalize
from datasets.lookup.cohort import Band
from vitamin.refusals import Kind, Refusal

TRANSACTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}")
MAX_TEXT = 200
MAX_GROUP_BY = 4

LOOKUP_KEYS = frozenset({"transaction_id", "items", "fields", "threshold"})
COHORT_KEYS = frozenset({"transaction_id", "items", "group_by", "measures", "cutoff"})
ITEM_KEYS = frozenset({"reference", "id_type", "id", "id_sha256", "consent"})
CONSENT_KEYS = frozenset({"reference", "scope", "expires_at"})


class ItemRefusal:
    """Why one item of a batch was not looked up: a stable code and a sentence."""

    CONSENT_MISSING = "consent_missing"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_SCOPE = "consent_scope"
    INVALID_IDENTIFIER = "invalid_identifier"
    UNSUPPORTED_IDENTIFIER = "unsupported_identifier"
    CUTOFF_LIMIT = "cutoff_limit"

    MESSAGES = {
        CONSENT_MISSING: "No consent was given with this item: a lookup needs the consent's reference, scope and expiry.",
        CONSENT_EXPIRED: "The consent given with this item has expired.",
        CONSENT_SCOPE: "The consent given with this item does not cover this dataset's purpose ({scope}).",
        INVALID_IDENTIFIER: "{reason}",
        UNSUPPORTED_IDENTIFIER: "This dataset cannot be looked up by {id_type}; it can by {supported}.",
        CUTOFF_LIMIT: "This customer was already checked against {limit} other cut-off(s) today; "
        "a different cut-off is refused until tomorrow.",
    }


@dataclass
class Consent:
    reference: str
    scope: tuple[str, ...]
    expires_at: datetime


@dataclass
class Item:
    """One customer of a batch. `digest` is the SHA-256 of the normalized identifier (None when refused)."""

    reference: str
    id_type: str
    digest: str | None
    consent: Consent | None
    refusal: str | None = None
    refusal_message: str = ""

    def refuse(self, code: str, **values: Any) -> None:
        if self.refusal is None:
            self.refusal = code
            self.refusal_message = ItemRefusal.MESSAGES[code].format(**values)


@dataclass(frozen=True)
class Threshold:
    field: str
    cutoff: float


@dataclass
class LookupBody:
    transaction_id: str
    items: list[Item]
    fields: tuple[str, ...] | None
    threshold: Threshold | None


@dataclass
class CohortBody:
    transaction_id: str
    items: list[Item]
    group_by: tuple[str | Band, ...]
    measures: tuple[str, ...] | None
    cutoff: Threshold | None


def invalid(message: str, where: str) -> Refusal:
    return Refusal(f"{where}: {message}", code="invalid_request", kind=Kind.INVALID, details={"field": where})


def parse_lookup(data: Any, *, max_items: int, consent_scope: str, now: datetime) -> LookupBody:
    body = _object(data, "body", LOOKUP_KEYS)
    fields = _names(body.get("fields"), "fields") if body.get("fields") is not None else None
    threshold = _threshold(body.get("threshold"), "threshold")
    return LookupBody(
        transaction_id=_transaction_id(body),
        items=_items(body, max_items=max_items, consent_scope=consent_scope, now=now, reference_required=True),
        fields=fields,
        threshold=threshold,
    )


def parse_cohort(data: Any, *, max_items: int, consent_scope: str, now: datetime) -> CohortBody:
    body = _object(data, "body", COHORT_KEYS)
    raw_groups = body.get("group_by", [])
    if not isinstance(raw_groups, list) or len(raw_groups) > MAX_GROUP_BY:
        raise invalid(f"a list of at most {MAX_GROUP_BY} fields or bands", "group_by")
    group_by: list[str | Band] = []
    for index, entry in enumerate(raw_groups):
        where = f"group_by[{index}]"
        if isinstance(entry, str):
            group_by.append(_name(entry, where))
            continue
        band = _object(entry, where, frozenset({"band", "width"}))
        width = band.get("width")
        if not _number(width) or width <= 0:
            raise invalid("a band's width is a positive number", f"{where}.width")
        group_by.append(Band(_name(band.get("band"), f"{where}.band"), float(width)))
    measures = _names(body.get("measures"), "measures") if body.get("measures") is not None else None
    return CohortBody(
        transaction_id=_transaction_id(body),
        items=_items(body, max_items=max_items, consent_scope=consent_scope, now=now, reference_required=False),
        group_by=tuple(group_by),
        measures=measures,
        cutoff=_threshold(body.get("cutoff"), "cutoff"),
    )


# --- pieces -----------------------------------------------------------------------------


def _object(value: Any, where: str, keys: frozenset[str]) -> dict:
    if not isinstance(value, dict):
        raise invalid("must be a JSON object", where)
    unknown = sorted(set(value) - keys)
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; known: {', '.join(sorted(keys))}", where)
    return value


def _text(value: Any, where: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise invalid(f"a non-empty string of at most {MAX_TEXT} characters", where)
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise invalid("a field name", where)
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise invalid("a non-empty list of field names", where)
    return tuple(dict.fromkeys(_name(item, f"{where}[{index}]") for index, item in enumerate(value)))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _threshold(value: Any, where: str) -> Threshold | None:
    if value is None:
        return None
    threshold = _object(value, where, frozenset({"field", "cutoff"}))
    cutoff = threshold.get("cutoff")
    if not _number(cutoff):
        raise invalid("a finite number", f"{where}.cutoff")
    return Threshold(_name(threshold.get("field"), f"{where}.field"), float(cutoff))


def _transaction_id(body: dict) -> str:
    value = body.get("transaction_id")
    if not isinstance(value, str) or not TRANSACTION_ID.fullmatch(value):
        raise invalid(
            "required: 1-100 characters, letters, digits and . _ : - (starting with a letter or digit)",
            "transaction_id",
        )
    return value


def _items(body: dict, *, max_items: int, consent_scope: str, now: datetime, reference_required: bool) -> list[Item]:
    raw = body.get("items")
    if not isinstance(raw, list) or not raw:
        raise invalid("a non-empty list of customers", "items")
    if len(raw) > max_items:
        raise Refusal(
            f"A batch holds at most {max_items} items; this one has {len(raw)}. Split it.",
            code="batch_too_large",
            kind=Kind.TOO_LARGE,
            details={"max_items": max_items, "items": len(raw)},
        )
    return [_item(entry, f"items[{index}]", consent_scope, now, reference_required) for index, entry in enumerate(raw)]


def _item(value: Any, where: str, consent_scope: str, now: datetime, reference_required: bool) -> Item:
    entry = _object(value, where, ITEM_KEYS)
    reference = _text(entry.get("reference"), f"{where}.reference", required=reference_required) or ""
    id_type = entry.get("id_type")
    if id_type not in IDENTIFIER_KINDS:
        raise invalid(f"one of {', '.join(IDENTIFIER_KINDS)}", f"{where}.id_type")
    raw_id, raw_digest = entry.get("id"), entry.get("id_sha256")
    if (raw_id is None) == (raw_digest is None):
        raise invalid("give exactly one of id and id_sha256", where)
    if not isinstance(raw_id if raw_digest is None else raw_digest, str):
        raise invalid("a string", f"{where}.{'id' if raw_digest is None else 'id_sha256'}")
    item = Item(reference=reference, id_type=id_type, digest=None, consent=_consent(entry.get("consent"), where))
    if item.consent is None:
        item.refuse(ItemRefusal.CONSENT_MISSING)
    elif item.consent.expires_at <= now:
        item.refuse(ItemRefusal.CONSENT_EXPIRED)
    elif consent_scope not in item.consent.scope:
        item.refuse(ItemRefusal.CONSENT_SCOPE, scope=consent_scope)
    try:
        item.digest = check_digest(raw_digest) if raw_id is None else digest(normalize(id_type, raw_id))
    except InvalidIdentifier as exc:
        item.refuse(ItemRefusal.INVALID_IDENTIFIER, reason=str(exc))
    if item.refusal is not None:
        item.digest = None  # nothing of a refused item is looked up, or kept
    return item


@functools.lru_cache(maxsize=4096)
def _datetime(text: str) -> datetime | None:
    """An ISO 8601 date and time (a batch's consents often share their expiry: parsed once)."""
    try:
        return parse_datetime(text)
    except ValueError:  # well-formed, but no such date or time
        return None


def _consent(value: Any, where: str) -> Consent | None:
    """The consent as the bank stated it; None when it is missing or lacks a part (refused per item)."""
    if value is None:
        return None
    consent = _object(value, f"{where}.consent", CONSENT_KEYS)
    reference = _text(consent.get("reference"), f"{where}.consent.reference", required=False)
    scope = consent.get("scope")
    if isinstance(scope, str):
        scope = [scope]
    if scope is not None and (
        not isinstance(scope, list) or not all(isinstance(s, str) and 0 < len(s) <= MAX_TEXT for s in scope)
    ):
        raise invalid("a string or a list of strings", f"{where}.consent.scope")
    expires = consent.get("expires_at")
    expires_at = None
    if expires is not None:
        parsed = _datetime(expires) if isinstance(expires, str) else None
        if parsed is None:
            raise invalid("an ISO 8601 date and time, e.g. 2027-06-30T23:59:59+08:00", f"{where}.consent.expires_at")
        expires_at = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    if reference is None or not scope or expires_at is None:
        return None
    return Consent(reference=reference, scope=tuple(scope), expires_at=expires_at)
