"""The demo bank's own assessment program (examples/bank_assessment/assess.py) against a fresh demo server.

The program is run once, as a bank would run it, with the virtualenv's Python and nothing of the
platform's on its path; each test then checks one property of what it wrote against what
demo-customers.json says the platform should answer, and against the dataset's k from the
catalog API.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from live_demo import run_partner_program, start_demo_server

from testenv import REPO_DIR

pytestmark = pytest.mark.slow

PROGRAM = REPO_DIR / "examples" / "bank_assessment" / "assess.py"
CUTOFF = 600  # a multiple of the file's score band width (50), so a band is wholly above or below it


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The demo server, the program's run against it, and what it wrote."""
    root = tmp_path_factory.mktemp("bank-demo")
    with start_demo_server(root) as demo:
        out = root / "assessment"
        stdout = run_partner_program(
            PROGRAM,
            "--base-url",
            demo.base,
            "--credentials",
            str(demo.data_dir / "demo-credentials.json"),
            "--customers",
            str(demo.data_dir / "demo-customers.json"),
            "--out",
            str(out),
            "--cutoff",
            str(CUTOFF),
            cwd=root,  # not the checkout: the program needs nothing of the platform
            timeout=300,
            log=demo.log,
        )
        bank = demo.partner("bank")
        token = requests.post(
            f"{demo.base}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "catalog:read"},
            auth=(bank["client_id"], bank["client_secret"]),
            timeout=30,
        ).json()["access_token"]
        sample = requests.get(
            f"{demo.base}/api/v1/datasets/card_transactions/sample",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        sample.raise_for_status()
        yield SimpleNamespace(
            stdout=stdout,
            out=out,
            demo=json.loads((demo.data_dir / "demo-customers.json").read_text()),
            k=sample.json()["k"],
        )


def _by_reference(run) -> dict[str, dict]:
    rows = _read_csv(run.out / "assessments.csv")
    by_reference = {row["reference"]: row for row in rows}
    assert len(by_reference) == len(rows), "references in demo-customers.json are unique"
    return by_reference


def test_every_consented_customer_gets_the_answer_the_file_expects(run):
    assessed = _by_reference(run)
    assert run.demo["customers"], "the demo has consented customers"
    for customer in run.demo["customers"]:
        row, expected = assessed[customer["reference"]], customer["expected"]
        assert row["status"] == expected["status"], customer["reference"]
        if expected["status"] == "refused":
            assert row["refusal"] == expected["refusal"], customer["reference"]
        if expected["status"] == "matched":
            assert row["score_band"] == expected["credit_score_band"], customer["reference"]
    statuses = {row["status"] for row in assessed.values()}
    assert "matched" in statuses


def test_strangers_are_not_found(run):
    assessed = _by_reference(run)
    assert run.demo["strangers"]
    for stranger in run.demo["strangers"]:
        row = assessed[stranger["reference"]]
        assert (row["status"], row["score_band"], row["decision"]) == ("not_found", "", "N/A")


def test_threshold_decisions_agree_with_the_expected_score_bands(run):
    assessed = _by_reference(run)
    decisions = set()
    for customer in run.demo["customers"]:
        expected, decision = customer["expected"], assessed[customer["reference"]]["decision"]
        if expected["status"] != "matched":
            assert decision == "N/A", customer["reference"]
            continue
        band_low = int(expected["credit_score_band"].strip("[)").split(",")[0])
        assert decision == ("Y" if band_low >= CUTOFF else "N"), customer["reference"]
        decisions.add(decision)
    assert decisions == {"Y", "N"}, "the demo customers fall on both sides of the cut-off"


def test_no_segment_rests_on_fewer_than_k_buyers(run):
    segments = _read_csv(run.out / "segments.csv")
    assert run.k >= 2
    assert segments, "some province x gender groups pass k on the demo data"
    assert all(int(row["buyers"]) >= run.k for row in segments), [row for row in segments if int(row["buyers"]) < run.k]
    assert len({(row["province"], row["gender"]) for row in segments}) == len(segments)


def test_segment_context_is_the_applicants_own_segment(run):
    segments = {(row["province"], row["gender"]): row for row in _read_csv(run.out / "segments.csv")}
    with_context = 0
    for row in _by_reference(run).values():
        segment = segments.get((row["province"], row["gender"]))
        if row["status"] != "matched" or segment is None:
            assert row["segment_spending_per_buyer"] == row["segment_buyers"] == "", row["reference"]
            continue
        assert row["segment_spending_per_buyer"] == segment["spending_per_buyer"]
        assert row["segment_buyers"] == segment["buyers"]
        with_context += 1
    assert with_context > 0


def test_the_replayed_batch_is_byte_identical(run):
    first = (run.out / "responses" / "lookup.json").read_bytes()
    replay = (run.out / "responses" / "lookup-replay.json").read_bytes()
    assert first == replay
    answer = json.loads(first)
    assert answer["items"] == len(run.demo["customers"]) + len(run.demo["strangers"])
    assert "identical" in run.stdout and "DIFFERENT" not in run.stdout
