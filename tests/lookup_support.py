"""Helpers of the lookup tests: consumers as the source holds them, and request bodies.

`people(ids)` gives consumers' raw identifiers and the credit features the source holds for them (from the
synthetic connector directly, not through any lookup code), so tests check answers against the source of truth.
Consumers numbered from CONSUMERS on have valid identifiers that exist nowhere.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
from django.utils import timezone

from connectors.synthetic.consumer_tables import CreditProfilesTable
from connectors.synthetic.people import Population
from datasets.identifiers import digest

CONSUMERS = 20_000
SEED = 2015
SCOPE = "credit_assessment"


@dataclasses.dataclass(frozen=True)
class Person:
    index: int
    resident_id: str
    mobile: str
    credit_score: int
    income_band: str


def people(ids) -> list[Person]:
    """Consumers by number: ids below CONSUMERS are in the source, ids from CONSUMERS on exist nowhere."""
    ids = np.asarray(list(ids), dtype=np.int64)
    columns = Population(SEED).columns(ids, ["id_number", "phone", "income_band"])
    scores = CreditProfilesTable({"rows": CONSUMERS, "seed": SEED}).features(ids)["credit_score"]
    return [
        Person(int(i), rid, phone, int(score), band)
        for i, rid, phone, score, band in zip(
            ids,
            columns["id_number"].to_pylist(),
            columns["phone"].to_pylist(),
            scores,
            columns["income_band"].to_pylist(),
            strict=True,
        )
    ]


def consent(reference: str = "C-1", *, days: float = 30, scope=SCOPE) -> dict:
    expires = timezone.localtime() + timedelta(days=days)
    return {"reference": reference, "scope": scope, "expires_at": expires.isoformat()}


def item(person: Person, *, form: str = "resident_id", reference: str | None = None, **overrides) -> dict:
    """An item for `person`: form resident_id, mobile, resident_id_sha256 or mobile_sha256."""
    id_type = form.removesuffix("_sha256")
    value = person.resident_id if id_type == "resident_id" else person.mobile
    entry = {"reference": reference or f"ref-{person.index}", "id_type": id_type}
    entry.update({"id_sha256": digest(value)} if form.endswith("_sha256") else {"id": value})
    entry["consent"] = consent(f"C-{person.index}")
    entry.update(overrides)
    return entry
