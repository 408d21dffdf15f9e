"""`demo-customers.json`: consented demo customers of the demo bank, to try lookups against a fresh `make run`.

The demo `credit_profiles` is built from the synthetic connector, whose consumer i is
row i of every table of the same seed; so the identifiers of consumers 0..rows-1 are
regenerated here, and each is looked up in the published version (through the same
pseudonyms and point reads as the API) to say what a lookup will answer: matched with the
customer's credit score band, or not found (a few customers fall to k-anonymity
suppression). Consumers numbered past `rows` have valid identifiers that exist nowhere.
"""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
from django.utils import timezone

from catalog.models import Dataset
from connectors.synthetic.people import Population
from datasets.identifiers import digest, normalize
from lookups import keys
from lookups.service import lookup_table

DEMO_DATASET = "credit_profiles"
DEMO_CUSTOMERS = 300
DEMO_STRANGERS = 20
SCORE_BAND = 50


class DemoCustomersError(Exception):
    """The demo customers cannot be written (the dataset is not built yet, or not from synthetic data)."""


def score_band(score: int | None) -> str | None:
    if score is None:
        return None
    low = score // SCORE_BAND * SCORE_BAND
    return f"[{low},{low + SCORE_BAND})"


def demo_customers(count: int = DEMO_CUSTOMERS, strangers: int = DEMO_STRANGERS) -> dict:
    dataset = Dataset.objects.filter(slug=DEMO_DATASET).first()
    version = dataset.latest_version() if dataset else None
    if version is None:
        raise DemoCustomersError(f"{DEMO_DATASET} has no published version yet (run build_demo_datasets).")
    spec = version.dataset_spec
    if spec.source.kind != "synthetic" or spec.lookup is None or not spec.lookup.keys:
        raise DemoCustomersError(f"{DEMO_DATASET} v{version.number} is not a synthetic lookup dataset.")
    rows, seed = int(spec.source.options["rows"]), int(spec.source.options["seed"])
    chosen = sorted(random.Random(seed).sample(range(rows), min(count, rows)))
    ids = np.array(chosen + list(range(rows, rows + strangers)), dtype=np.int64)
    people = Population(seed).columns(ids, ["id_number", "phone"])
    resident_ids, mobiles = people["id_number"].to_pylist(), people["phone"].to_pylist()

    key = keys.pseudonym_key(dataset.slug, version.pseudonym_release)
    primary = spec.lookup.primary_key
    pseudonyms = [key.pseudonym(digest(normalize("resident_id", value))) for value in resident_ids]
    found = lookup_table(version, spec).find(primary, set(pseudonyms), ["credit_score"])
    scores = dict(zip(found[primary].to_pylist(), found["credit_score"].to_pylist(), strict=True))

    expires = (timezone.localtime() + timedelta(days=365)).replace(microsecond=0).isoformat()
    customers, unknown = [], []
    for index, (resident_id, mobile, pseudonym) in enumerate(zip(resident_ids, mobiles, pseudonyms, strict=True)):
        stranger = index >= len(chosen)
        entry = {
            "reference": f"demo-{'stranger' if stranger else 'customer'}-{index:04d}",
            "resident_id": resident_id,
            "mobile": mobile,
            "consent": {"reference": f"DEMO-CONSENT-{index:05d}", "scope": "credit_assessment", "expires_at": expires},
            "expected": (
                {"status": "matched", "credit_score_band": score_band(scores[pseudonym])}
                if pseudonym in scores
                else {"status": "not_found"}
            ),
        }
        (unknown if stranger else customers).append(entry)
    return {
        "about": (
            "Synthetic consented customers of the demo bank, for POST /api/v1/datasets/credit_profiles/lookup "
            "(docs/lookup.md). Identifiers are in normalized form; 'strangers' exist nowhere. Made up, not real people."
        ),
        "dataset": dataset.slug,
        "version": version.number,
        "normalized_forms": {
            "resident_id": "18 characters: 17 digits and a check character (0-9 or upper-case X)",
            "mobile": "11 digits starting with 1, no country code",
            "id_sha256": "lower-case hex SHA-256 of the UTF-8 normalized form",
        },
        "customers": customers,
        "strangers": unknown,
    }
