"""A bank's credit assessment of consented applicants, over Vitamin's public HTTP APIs only.

What a bank's risk team runs, step by step:

1. Sign in. The bank's OAuth client (client credentials, scopes `query` and `lookup`) gets a
   token; Authlib's OAuth2Session fetches a new one when it expires.
2. Segment context. `card_transactions` is an aggregate-only dataset: the bank may ask for
   spending per buyer by segment, never for anyone's transactions. Segments are province and
   gender, the two dimensions it shares with `credit_profiles` under the same coarsening (its age
   bands are cut differently, so they would not match). Groups of fewer than k distinct buyers are
   dropped by the platform without a word, so every row written carries its buyer count.
   Written to `segments.csv`.
3. Assessment. One lookup batch of `credit_profiles` for every applicant, each with the consent
   the bank recorded. Identifiers leave the bank only as SHA-256 of their normalized form
   (`id_sha256`). A second batch asks only "credit score >= cut-off?" (Y/N, the score itself is
   not returned): what a branch system would ask when it needs no more. Each item of an answer
   says what happened to it (matched, not_found, refused with a code). The bank keeps the score
   band, not the score, in `assessments.csv`, with its segment's spending for context.
4. Idempotency. Each batch has a transaction id of the bank's. Sending the same batch again with
   the same id (after a timeout, say) must give back the first answer byte for byte, charge no
   quota, and say so (`X-Vitamin-Replayed: true`). The program checks that and exits 1 if not.

The raw answers are kept under `responses/` for the bank's own records.

    python examples/bank_assessment/assess.py --base-url http://localhost:8000 \\
        --credentials var/demo-credentials.json --customers var/demo-customers.json --out assessment
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import uuid
from collections import Counter
from pathlib import Path

from authlib.integrations.requests_client import OAuth2Session

LOOKUP_DATASET = "credit_profiles"
FIELDS = ["credit_score", "income_band", "on_time_ratio", "max_days_past_due", "province", "gender"]
SCORE_BAND_WIDTH = 50
SEGMENT_SQL = """
SELECT province, gender,
       COUNT(DISTINCT buyer) AS buyers,
       COUNT(*) AS transactions,
       round(SUM(amount) / COUNT(DISTINCT buyer), 2) AS spending_per_buyer
FROM card_transactions
GROUP BY province, gender
ORDER BY province, gender
"""
TIMEOUT_S = 120


def sign_in(base_url: str, credentials_file: Path) -> OAuth2Session:
    """The bank's client from the credentials file: the partner whose institution type is a bank."""
    partners = json.loads(credentials_file.read_text(encoding="utf-8"))["partners"]
    bank = next(partner for partner in partners if partner["type"] == "bank")
    session = OAuth2Session(
        bank["client_id"],
        bank["client_secret"],
        scope="query lookup",
        token_endpoint=f"{base_url}/oauth/token",
    )
    session.fetch_token(grant_type="client_credentials")
    return session


def segment_spending(session: OAuth2Session, base_url: str) -> list[dict]:
    response = session.post(f"{base_url}/api/v1/query", json={"sql": SEGMENT_SQL, "format": "json"}, timeout=TIMEOUT_S)
    response.raise_for_status()
    body = response.json()
    if body.get("error") or body["truncated"]:
        raise SystemExit(f"segment query incomplete: {body.get('error') or 'truncated'}")
    names = [column["name"] for column in body["columns"]]
    return [dict(zip(names, row, strict=True)) for row in body["rows"]]


def lookup_item(applicant: dict) -> dict:
    """One applicant as the lookup API takes them; the identifier leaves as the SHA-256 of its normalized form."""
    return {
        "reference": applicant["reference"],
        "id_type": "resident_id",
        "id_sha256": hashlib.sha256(applicant["resident_id"].encode("utf-8")).hexdigest(),
        "consent": applicant["consent"],
    }


def send_batch(session: OAuth2Session, base_url: str, batch: dict):
    response = session.post(f"{base_url}/api/v1/datasets/{LOOKUP_DATASET}/lookup", json=batch, timeout=TIMEOUT_S)
    if not response.ok:
        raise SystemExit(f"lookup batch {batch['transaction_id']} refused: {response.status_code} {response.text}")
    return response


def score_band(score: int | None) -> str:
    if score is None:
        return ""
    low = score // SCORE_BAND_WIDTH * SCORE_BAND_WIDTH
    return f"[{low},{low + SCORE_BAND_WIDTH})"


def assessment_rows(applicants: list[dict], detailed: dict, threshold: dict, segments: list[dict]) -> list[dict]:
    by_segment = {(row["province"], row["gender"]): row for row in segments}
    rows = []
    for applicant, result, decision in zip(applicants, detailed["results"], threshold["results"], strict=True):
        fields = result["fields"] or {}
        segment = by_segment.get((fields.get("province"), fields.get("gender")), {})
        rows.append(
            {
                "reference": applicant["reference"],
                "status": result["status"],
                "refusal": (result["refusal"] or decision["refusal"] or {}).get("code", ""),
                "score_band": score_band(fields.get("credit_score")),
                "income_band": fields.get("income_band") or "",
                "decision": decision["answer"],
                "province": fields.get("province") or "",
                "gender": fields.get("gender") or "",
                "segment_spending_per_buyer": segment.get("spending_per_buyer", ""),
                "segment_buyers": segment.get("buyers", ""),
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the platform, e.g. http://localhost:8000")
    parser.add_argument("--credentials", type=Path, required=True, help="demo-credentials.json")
    parser.add_argument("--customers", type=Path, required=True, help="demo-customers.json: the applicants")
    parser.add_argument("--out", type=Path, required=True, help="folder for segments.csv and assessments.csv")
    parser.add_argument("--cutoff", type=int, default=600, help="credit score cut-off of the Y/N batch")
    args = parser.parse_args(argv)
    base_url = args.base_url.rstrip("/")
    (args.out / "responses").mkdir(parents=True, exist_ok=True)

    session = sign_in(base_url, args.credentials)

    segments = segment_spending(session, base_url)
    write_csv(
        args.out / "segments.csv", segments, ["province", "gender", "buyers", "transactions", "spending_per_buyer"]
    )

    demo = json.loads(args.customers.read_text(encoding="utf-8"))
    applicants = demo["customers"] + demo["strangers"]  # strangers: applicants with no credit file anywhere
    run = uuid.uuid4().hex[:12]
    items = [lookup_item(applicant) for applicant in applicants]
    batch = {"transaction_id": f"assess-{run}", "fields": FIELDS, "items": items}
    threshold_batch = {
        "transaction_id": f"assess-{run}-cutoff",
        "threshold": {"field": "credit_score", "cutoff": args.cutoff},
        "items": items,
    }
    detailed = send_batch(session, base_url, batch)
    threshold = send_batch(session, base_url, threshold_batch)
    replay = send_batch(session, base_url, batch)  # as after a timeout: the same batch, the same transaction id
    for name, response in (("lookup", detailed), ("threshold", threshold), ("lookup-replay", replay)):
        (args.out / "responses" / f"{name}.json").write_bytes(response.content)

    rows = assessment_rows(applicants, detailed.json(), threshold.json(), segments)
    write_csv(args.out / "assessments.csv", rows, list(rows[0]))

    statuses = Counter(row["status"] for row in rows)
    decisions = Counter(row["decision"] for row in rows)
    with_context = sum(1 for row in rows if row["segment_spending_per_buyer"] != "")
    identical = replay.content == detailed.content and replay.headers.get("X-Vitamin-Replayed") == "true"
    print(f"segments: {len(segments)} province x gender groups (each of at least k buyers) -> {args.out}/segments.csv")
    print(f"applicants: {len(rows)}; " + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))
    print(
        f"credit_score >= {args.cutoff}: "
        + ", ".join(f"{answer} {count}" for answer, count in sorted(decisions.items()))
    )
    print(f"segment context for {with_context} applicants -> {args.out}/assessments.csv")
    print(f"replay of {batch['transaction_id']}: {'identical' if identical else 'DIFFERENT'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
