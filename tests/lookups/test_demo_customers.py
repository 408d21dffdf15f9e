"""demo-customers.json: what `make run` gives a bank's developer to try lookups with, and whether it tells the truth."""

from __future__ import annotations

import io
import json
import stat

from catalog_support import auth
from django.core.management import call_command
from lookup_support import people


def test_the_demo_customers_file_predicts_what_lookups_answer(client, bank_lookup, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("create_demo_customers", "--count", "40", stdout=io.StringIO())
    path = tmp_path / "demo-customers.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    demo = json.loads(path.read_text())
    assert len(demo["customers"]) == 40 and len(demo["strangers"]) == 20 and demo["version"] == 1
    sample = demo["customers"] + demo["strangers"][:5]
    # The file's identifiers are the source's own (checked against the connector, not the lookup code).
    truth = {person.resident_id: person for person in people(range(20_000 + 20))}
    items = []
    for entry in sample:
        assert truth[entry["resident_id"]].mobile == entry["mobile"]
        items.append(
            {"reference": entry["reference"], "id_type": "mobile", "id": entry["mobile"], "consent": entry["consent"]}
        )
    response = client.post(
        "/api/v1/datasets/credit_profiles/lookup",
        data=json.dumps({"transaction_id": "demo-1", "items": items}),
        content_type="application/json",
        **auth(bank_lookup.token),
    )
    assert response.status_code == 200
    for entry, result in zip(sample, response.json()["results"], strict=True):
        assert result["status"] == entry["expected"]["status"]
        if result["status"] == "matched":
            score = result["fields"]["credit_score"]
            assert entry["expected"]["credit_score_band"] == f"[{score // 50 * 50},{score // 50 * 50 + 50})"
            assert score == truth[entry["resident_id"]].credit_score
    assert sum(entry["expected"]["status"] == "matched" for entry in demo["customers"]) >= 35
    assert all(entry["expected"]["status"] == "not_found" for entry in demo["strangers"])
