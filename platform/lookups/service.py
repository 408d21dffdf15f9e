"""Consented lookups and cohort assessments: every rule of docs/lookup.md is applied here, once.

    answer = lookup(institution_id=..., client_id=..., slug="credit_profiles", data=request.data, request=request)
    HttpResponse(answer.body, content_type="application/json")

A lookup batch, step by step (a cohort assessment takes the same steps, with its own shape):

 1. replay    a transaction id seen within VITAMIN_LOOKUP_REPLAY_HOURS: after the grant is checked again,
              the first answer, byte for byte, with no quota charged (`lookup.replay` audited)
 2. read      the dataset (404), the request (400 whole; an item's own problem refuses only that item)
 3. grant     lookup mode (403); the version it reads (pinned, else the latest); the fields it allows
 4. match     each identifier normalized, hashed and pseudonymized with that version's key
 5. read      point reads of the version (datasets.lookup); in threshold mode, then the cut-off limit
              per customer (lookups.cutoffs), a refused item's row dropped unanswered
 6. commit    one transaction: the request, its consents and cut-offs kept, `lookups` charged per
              item (429 for the whole batch), `lookup.batch` audited; if any of it fails, none is kept

Whether a customer exists never changes the shape of an item's answer, its refusals or the
error of a batch: consent and identifier refusals are decided before the read, on what the
partner sent, and the cut-off limit treats one identifier alike whether or not it is found.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from access import service as access
from access.metered import MeteredUse
from access.service import Grant
from audit.actors import by_client_id
from audit.service import record
from catalog.api import get_dataset
from catalog.models import Dataset, DatasetVersion
from datasets.lookup.cohort import Band, summarize
from datasets.lookup.reader import LookupTable
from datasets.spec import DatasetSpec, LookupSpec, Mode
from datasets.storage import Store
from lookups import keys, replays
from lookups.cutoffs import plan_cutoffs
from lookups.models import CutoffCheck, LookupConsent, LookupRequest
from lookups.requests import TRANSACTION_ID, Item, ItemRefusal, Threshold, parse_cohort, parse_lookup
from vitamin.refusals import Kind, Refusal

log = logging.getLogger("vitamin.lookups")

MATCHED, NOT_FOUND, REFUSED = "matched", "not_found", "refused"
YES, NO, NOT_AVAILABLE = "Y", "N", "N/A"


@dataclass(frozen=True)
class Answer:
    body: bytes  # the JSON answer, exactly as first sent
    replayed: bool
    version: int | None  # None for a replay (the body says which version answered)


# --- the shared steps ---------------------------------------------------------------------


class _Use:
    """One request's dataset, grant, version and spec (steps 1-3)."""

    def __init__(self, kind: str, action: str, *, institution_id: int, client_id: str, slug: str, request):
        self.kind = kind
        self.institution_id = institution_id
        self.client_id = client_id
        self.dataset: Dataset = get_dataset(slug)
        self.request = request
        self.now = timezone.now()
        self.transaction_id = ""
        self.digest = ""
        self.metered = MeteredUse(
            institution_id,
            [self.dataset],
            Mode.LOOKUP,
            action=action,
            actor=by_client_id(client_id, institution_id),
            target=f"dataset:{self.dataset.slug}",
            request=request,
        )

    @property
    def consent_scope(self) -> str:
        """What consents must cover, from the dataset's spec (an item is refused when its consent does not)."""
        try:
            spec = self.dataset.current_spec
        except ValueError:
            return ""
        return spec.lookup.consent_scope if spec.lookup is not None else ""

    def refused(self, refusal: Refusal, transaction_id: str) -> Refusal:
        """Record a refusal of this use (action denied, with its code) and give it back to be raised."""
        self.metered.on_refused(refusal, {"dataset": self.dataset.slug, "transaction_id": transaction_id})
        return refusal

    def replay_of(self, data: Any) -> Answer | None:
        """The first answer, when `data` names a transaction id seen before (checked before the body is read
        item by item: a replay costs the JSON and a hash, not the validation of 10,000 items again)."""
        self.digest = replays.request_digest(self.kind, self.dataset.slug, data)
        transaction_id = data.get("transaction_id") if isinstance(data, dict) else None
        if not isinstance(transaction_id, str) or not TRANSACTION_ID.fullmatch(transaction_id):
            return None  # the full read refuses it
        return self.replay(transaction_id, self.digest)

    def read_body(self, parse, data: Any, max_items: int):
        """The request read item by item (`parse_lookup` or `parse_cohort`), under the dataset's consent scope."""
        body = parse(data, max_items=max_items, consent_scope=self.consent_scope, now=self.now)
        self.transaction_id = body.transaction_id
        return body

    def replay(self, transaction_id: str, digest: str) -> Answer | None:
        try:
            earlier = replays.earlier_answer(self.institution_id, transaction_id, digest, self.kind, self.now)
        except Refusal as exc:
            raise self.refused(exc, transaction_id) from None
        if earlier is None:
            return None
        self.metered.grants({"transaction_id": transaction_id})  # a revoked grant stops replays too
        details = {"dataset": self.dataset.slug, "transaction_id": transaction_id, "kind": self.kind}
        try:
            with transaction.atomic():
                record(
                    "lookup.replay",
                    target=self.metered.target,
                    details=details,
                    request=self.request,
                    **self.metered.actor,
                )
        except Exception:  # noqa: BLE001 - nothing is given out unaudited
            raise Refusal(
                "This cannot be recorded right now, so it was not done.",
                code="audit_unavailable",
                kind=Kind.UNAVAILABLE,
            ) from None
        return Answer(body=earlier, replayed=True, version=None)

    def grant(self, transaction_id: str) -> tuple[Grant, DatasetVersion, DatasetSpec, LookupSpec]:
        grant = self.metered.grants({"transaction_id": transaction_id})[0]
        version = access.version_for(grant)
        if version is None:
            raise Refusal(
                f"{self.dataset.slug} has no published version yet.", code="version_not_found", kind=Kind.NOT_FOUND
            )
        try:
            spec = version.dataset_spec
        except ValueError:
            spec = None
        if spec is None or spec.lookup is None or not spec.lookup.keys:
            raise Refusal(
                f"Version {version.number} of {self.dataset.slug} cannot be looked up (it was built before lookups "
                "were served); the next refresh publishes one that can.",
                code="dataset_unavailable",
                kind=Kind.UNAVAILABLE,
            )
        return grant, version, spec, spec.lookup

    def allowed_fields(self, grant: Grant, lookup_spec: LookupSpec) -> tuple[str, ...]:
        granted = set(grant.subscription.lookup_fields or lookup_spec.fields)
        return tuple(name for name in lookup_spec.fields if name in granted)

    def match(self, items: list[Item], version: DatasetVersion, spec: DatasetSpec) -> dict[int, str]:
        """Position → the dataset's pseudonym of the item's identifier, for every item not refused."""
        key = keys.pseudonym_key(self.dataset.slug, version.pseudonym_release)
        columns = _key_columns(spec, version)
        found = {}
        for position, item in enumerate(items):
            if item.refusal is not None:
                continue
            if item.id_type not in columns:
                item.refuse(ItemRefusal.UNSUPPORTED_IDENTIFIER, id_type=item.id_type, supported=", ".join(columns))
                continue
            found[position] = key.pseudonym(item.digest)
        return found

    def read(
        self, items: list[Item], pseudonyms: dict[int, str], version: DatasetVersion, spec: DatasetSpec, fields
    ) -> dict[int, dict[str, Any]]:
        """Position → the customer's row (`fields` and the primary key), for the items whose customer exists."""
        table = lookup_table(version, spec)
        columns = _key_columns(spec, version)
        rows: dict[int, dict[str, Any]] = {}
        for id_type, column in columns.items():
            positions = [p for p in pseudonyms if items[p].id_type == id_type]
            if not positions:
                continue
            try:
                found = table.find(column, {pseudonyms[p] for p in positions}, [spec.lookup.primary_key, *fields])
            except (OSError, pa.ArrowException, ValueError):
                log.exception("lookup read of %s v%s failed", self.dataset.slug, version.number)
                raise Refusal(
                    f"Version {version.number} of {self.dataset.slug} cannot be read right now; try again later.",
                    code="dataset_unavailable",
                    kind=Kind.UNAVAILABLE,
                ) from None
            by_key = {row[column]: row for row in found.to_pylist()}
            for position in positions:
                row = by_key.get(pseudonyms[position])
                if row is not None:
                    rows[position] = row
        return rows

    def commit(self, charges: dict[str, int], details: dict, keep) -> None:
        def hold(_grants) -> None:
            try:
                with transaction.atomic():
                    keep()
            except IntegrityError:
                raise Refusal(
                    "Another request with this transaction id, or for the same customers' cut-offs, was being "
                    "answered at the same moment. Send the request again.",
                    code="concurrent_request",
                    kind=Kind.CONFLICT,
                ) from None

        self.metered.commit(charges, details, hold=hold)

    def new_request(
        self, transaction_id: str, digest: str, version: DatasetVersion, items: int, body: bytes, matched=None
    ) -> LookupRequest:
        return LookupRequest.objects.create(
            institution_id=self.institution_id,
            client_id=self.client_id,
            dataset=self.dataset,
            version_number=version.number,
            kind=self.kind,
            transaction_id=transaction_id,
            request_digest=digest,
            items=items,
            matched=matched,
            answer=replays.seal(self.institution_id, transaction_id, body),
            created_at=self.now,
            replay_until=replays.replay_until(self.now),
        )


@functools.lru_cache(maxsize=8)
def _store(url: str) -> Store:
    return Store.from_url(url)  # resolving it (and making sure the folder exists) is not free: once per URL


def lookup_table(version: DatasetVersion, spec: DatasetSpec) -> LookupTable:
    store = _store(settings.STORE_URL)
    return LookupTable(
        fs=store.fs,
        data_paths=tuple(store.path(version.location, entry["path"]) for entry in version.data_files),
        primary_key=spec.lookup.primary_key,
        index_paths={
            entry["index"]: store.path(version.location, entry["path"]) for entry in version.files if entry.get("index")
        },
        cache_key=(store.root, version.location, *(entry.get("sha256", "") for entry in version.files)),
    )


def _insert_many(model, names: list[str], rows: list[tuple]) -> None:
    """INSERT rows of `model` in one executemany: a 10,000-item batch's consents in milliseconds, where building
    and compiling 10,000 model instances took seconds. Values go through the backend's own adapters."""
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    # Text and numbers go in as they are; dates and times through the backend's adapter (SQLite stores text).
    temporal = [i for i, field in enumerate(fields) if field.get_internal_type() in ("DateField", "DateTimeField")]
    prepared = []
    for row in rows:
        values = list(row)
        for i in temporal:
            values[i] = fields[i].get_db_prep_value(values[i], connection)
        prepared.append(values)
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)


def _key_columns(spec: DatasetSpec, version: DatasetVersion) -> dict[str, str]:
    """Identifier kind → the key column holding its pseudonyms, for the keys this version can be read by: the
    primary key, and each other key whose index file the version has."""
    indexed = {entry["index"] for entry in version.files if entry.get("index")}
    return {
        spec.column(name).identifier: name
        for name in spec.lookup.keys
        if name == spec.lookup.primary_key or name in indexed
    }


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _json(answer: dict) -> bytes:
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check_field(use: _Use, name: str, offered: tuple[str, ...], allowed: tuple[str, ...], where: str) -> None:
    if name not in offered:
        raise Refusal(
            f"{where}: {name!r} cannot be used here; this dataset offers {', '.join(offered) or 'none'}.",
            code="unknown_field",
            kind=Kind.INVALID,
            details={"field": where},
        )
    if name not in allowed:
        raise use.refused(
            Refusal(
                f"{where}: your subscription does not include {name!r}.",
                code="field_not_granted",
                kind=Kind.FORBIDDEN,
                details={"field": where},
            ),
            use.transaction_id,
        )


# --- lookups ------------------------------------------------------------------------------


def lookup(*, institution_id: int, client_id: str, slug: str, data: Any, request=None) -> Answer:
    use = _Use(
        LookupRequest.Kind.LOOKUP, "lookup.batch", institution_id=institution_id, client_id=client_id, slug=slug,
        request=request,
    )  # fmt: skip
    if (earlier := use.replay_of(data)) is not None:
        return earlier
    body = use.read_body(parse_lookup, data, settings.LOOKUP_MAX_ITEMS)
    digest = use.digest
    grant, version, spec, lookup_spec = use.grant(body.transaction_id)
    allowed = use.allowed_fields(grant, lookup_spec)
    threshold = body.threshold
    if threshold is not None and body.fields is not None:
        raise Refusal("Ask for fields or for a threshold answer, not both.", code="invalid_request", kind=Kind.INVALID)
    if threshold is None and grant.subscription.lookup_threshold_only:
        raise use.refused(
            Refusal(
                "Your subscription answers only threshold checks: send a threshold {field, cutoff}.",
                code="threshold_only",
                kind=Kind.FORBIDDEN,
            ),
            body.transaction_id,
        )
    if threshold is not None:
        _check_field(use, threshold.field, lookup_spec.thresholds, allowed, "threshold.field")
        fields: tuple[str, ...] = (threshold.field,)
    else:
        for index, name in enumerate(body.fields or ()):
            _check_field(use, name, lookup_spec.fields, allowed, f"fields[{index}]")
        fields = body.fields or allowed

    items = body.items
    pseudonyms = use.match(items, version, spec)
    rows = use.read(items, pseudonyms, version, spec, fields)
    cutoff_rows = []
    if threshold is not None:
        # The customer is counted by the primary key of the row found, so that naming one customer by resident ID
        # and again by mobile number does not give two budgets of cut-offs; an identifier found nowhere is
        # counted as sent (its answer is N/A whatever the cut-off).
        primary = lookup_spec.primary_key
        subjects = {
            position: keys.subject(institution_id, rows[position][primary] if position in rows else pseudonym)
            for position, pseudonym in pseudonyms.items()
        }
        plan = plan_cutoffs(
            institution_id, use.dataset.pk, threshold.field, threshold.cutoff, subjects.values(),
            timezone.localdate(use.now),
        )  # fmt: skip
        for position, subject in subjects.items():
            if subject in plan.refused:
                items[position].refuse(ItemRefusal.CUTOFF_LIMIT, limit=settings.LOOKUP_MAX_CUTOFFS_PER_DAY)
                rows.pop(position, None)  # read, but never answered
        cutoff_rows = plan.new_rows

    results, outcomes = [], []
    for position, item in enumerate(items):
        row = rows.get(position)
        status = REFUSED if item.refusal else MATCHED if row is not None else NOT_FOUND
        outcomes.append(item.refusal or status)
        entry: dict[str, Any] = {"reference": item.reference, "status": status}
        if threshold is not None:
            entry["answer"] = _threshold_answer(row, threshold)
        else:
            entry["fields"] = {name: _plain(row[name]) for name in fields} if row is not None else None
        entry["refusal"] = {"code": item.refusal, "message": item.refusal_message} if item.refusal else None
        results.append(entry)
    counts = Counter(result["status"] for result in results)
    answer = {
        "transaction_id": body.transaction_id,
        "dataset": slug,
        "version": version.number,
        "answer": "threshold" if threshold else "fields",
        "fields": None if threshold else list(fields),
        "threshold": {"field": threshold.field, "cutoff": threshold.cutoff} if threshold else None,
        "items": len(items),
        "matched": counts[MATCHED],
        "not_found": counts[NOT_FOUND],
        "refused": counts[REFUSED],
        "results": results,
    }
    encoded = _json(answer)
    consent_hashes = list(dict.fromkeys(_hash(item.consent.reference) for item in items if item.consent))
    details = {
        "dataset": slug,
        "version": version.number,
        "transaction_id": body.transaction_id,
        "items": len(items),
        "matched": counts[MATCHED],
        "not_found": counts[NOT_FOUND],
        "refused": counts[REFUSED],
        "answer": answer["answer"],
        **({"threshold": answer["threshold"]} if threshold else {"fields": list(fields)}),
        "consent_hashes": consent_hashes,
    }

    def keep() -> None:
        kept = use.new_request(body.transaction_id, digest, version, len(items), encoded, counts[MATCHED])
        _insert_many(
            LookupConsent,
            [
                "request",
                "position",
                "item_reference",
                "consent_reference",
                "consent_scope",
                "consent_expires_at",
                "outcome",
            ],
            [
                (
                    kept.pk,
                    position,
                    item.reference,
                    item.consent.reference if item.consent else "",
                    " ".join(item.consent.scope) if item.consent else "",
                    item.consent.expires_at if item.consent else None,
                    outcomes[position],
                )
                for position, item in enumerate(items)
            ],
        )
        _insert_many(
            CutoffCheck,
            ["institution", "dataset", "field", "subject", "day", "cutoff", "slot"],
            [(r.institution_id, r.dataset_id, r.field, r.subject, r.day, r.cutoff, r.slot) for r in cutoff_rows],
        )

    use.commit({"lookups": len(items)}, details, keep)
    return Answer(body=encoded, replayed=False, version=version.number)


def _threshold_answer(row: dict | None, threshold: Threshold) -> str:
    value = None if row is None else row.get(threshold.field)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_AVAILABLE
    return YES if value >= threshold.cutoff else NO


# --- cohorts ------------------------------------------------------------------------------


def cohort(*, institution_id: int, client_id: str, slug: str, data: Any, request=None) -> Answer:
    use = _Use(
        LookupRequest.Kind.COHORT, "lookup.cohort", institution_id=institution_id, client_id=client_id, slug=slug,
        request=request,
    )  # fmt: skip
    if (earlier := use.replay_of(data)) is not None:
        return earlier
    body = use.read_body(parse_cohort, data, settings.COHORT_MAX_ITEMS)
    digest = use.digest
    grant, version, spec, lookup_spec = use.grant(body.transaction_id)
    if grant.subscription.lookup_threshold_only:
        raise use.refused(
            Refusal(
                "Your subscription answers only threshold checks; cohort assessments need a subscription to the fields.",
                code="threshold_only",
                kind=Kind.FORBIDDEN,
            ),
            body.transaction_id,
        )
    if lookup_spec.cohort is None:
        raise Refusal(f"{slug} offers no cohort assessments.", code="cohorts_not_offered", kind=Kind.INVALID)
    allowed = use.allowed_fields(grant, lookup_spec)
    rules = lookup_spec.cohort
    group_names = []
    for index, entry in enumerate(body.group_by):
        if isinstance(entry, Band):
            _check_field(use, entry.field, rules.measures, allowed, f"group_by[{index}].band")
        else:
            _check_field(use, entry, rules.dimensions, allowed, f"group_by[{index}]")
        group_names.append(entry.name if isinstance(entry, Band) else entry)
    if len(set(group_names)) != len(group_names):
        raise Refusal("group_by names a field twice.", code="invalid_request", kind=Kind.INVALID)
    for index, name in enumerate(body.measures or ()):
        _check_field(use, name, rules.measures, allowed, f"measures[{index}]")
    measures = body.measures or tuple(name for name in rules.measures if name in allowed)
    if body.cutoff is not None:
        _check_field(use, body.cutoff.field, lookup_spec.thresholds, allowed, "cutoff.field")

    items = body.items
    pseudonyms = use.match(items, version, spec)
    needed = {entry.field if isinstance(entry, Band) else entry for entry in body.group_by} | set(measures)
    if body.cutoff is not None:
        needed.add(body.cutoff.field)
    rows = use.read(items, pseudonyms, version, spec, sorted(needed))
    primary = lookup_spec.primary_key
    table = pa.Table.from_pylist(list(rows.values())) if rows else None
    groups = []
    if table is not None:
        groups = summarize(
            table,
            entity=primary,
            group_by=body.group_by,
            measures=measures,
            k=spec.privacy.k if spec.privacy else 2,
            cutoff=(body.cutoff.field, body.cutoff.cutoff) if body.cutoff else None,
        )
    refusals = Counter(item.refusal for item in items if item.refusal)
    answer = {
        "transaction_id": body.transaction_id,
        "dataset": slug,
        "version": version.number,
        "items": len(items),
        "refused": dict(sorted(refusals.items())),
        "k": spec.privacy.k if spec.privacy else 2,
        "group_by": group_names,
        "measures": list(measures),
        "cutoff": {"field": body.cutoff.field, "cutoff": body.cutoff.cutoff} if body.cutoff else None,
        "groups": [{**group, "group": {k: _plain(v) for k, v in group["group"].items()}} for group in groups],
    }
    encoded = _json(answer)
    details = {
        "dataset": slug,
        "version": version.number,
        "transaction_id": body.transaction_id,
        "items": len(items),
        "list_sha256": _hash("\n".join(sorted(pseudonyms.values()))),
        "group_by": group_names,
        "measures": list(measures),
        "groups": len(groups),
    }
    use.commit(
        {"cohort_customers": len(items)},
        details,
        lambda: use.new_request(body.transaction_id, digest, version, len(items), encoded),
    )
    return Answer(body=encoded, replayed=False, version=version.number)
