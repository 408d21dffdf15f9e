"""Demo subscriptions for the demo partners (`create_demo_partners`), so `make run` has something to query.

Idempotent: a subscription that is approved and unexpired is left as it is; any
other is (re)granted. Datasets not synced yet, and partners not created yet, are
skipped and reported.
"""

from __future__ import annotations

from django.utils import timezone

from access import subscriptions
from access.models import QuotaPlan, Subscription
from catalog.models import Dataset
from datasets.spec import Mode
from institutions.credit_code import check_character
from institutions.models import Institution, InstitutionType
from oauth.demo import DEMO_PARTNERS

DEMO_PLAN = "demo"
DEMO_PURPOSE = "Demo subscription created by create_demo_subscriptions."
# Institution type of a demo partner → (dataset slug, modes) it is subscribed to.
DEMO_SUBSCRIPTIONS: dict[str, list[tuple[str, list[str]]]] = {
    InstitutionType.FUND_COMPANY: [
        ("industry_prosperity_monthly", [Mode.QUERY, Mode.DOWNLOAD]),
        ("stock_attention_daily", [Mode.QUERY, Mode.DOWNLOAD]),
        ("card_transactions", [Mode.QUERY]),
        ("company_consumption_monthly", [Mode.QUERY, Mode.DOWNLOAD]),
        ("market_daily", [Mode.QUERY, Mode.DOWNLOAD]),
        ("listed_brands", [Mode.QUERY, Mode.DOWNLOAD]),
    ],
    InstitutionType.BANK: [
        ("credit_profiles", [Mode.LOOKUP]),
        ("card_transactions", [Mode.QUERY]),
    ],
}


def demo_plan() -> QuotaPlan:
    plan, _ = QuotaPlan.objects.get_or_create(
        name=DEMO_PLAN,
        defaults={
            "description": "Generous limits for trying Vitamin out.",
            "queries_per_day": 10_000,
            "rows_returned_per_day": 100_000_000,
            "bytes_scanned_per_day": 500 * 1024**3,
            "bytes_downloaded_per_day": 100 * 1024**3,
            "lookups_per_day": 100_000,
            "cohort_customers_per_day": 1_000_000,
            "concurrent_queries": 4,
            "max_query_seconds": 120,
            "max_result_rows": 1_000_000,
        },
    )
    return plan


def create_demo_subscriptions() -> list[dict]:
    """Returns one line per intended subscription: {institution, dataset, outcome}, outcome being
    granted, unchanged, or skipped with the reason."""
    plan = demo_plan()
    now = timezone.now()
    results = []
    for partner in DEMO_PARTNERS:
        credit_code = partner["credit_code"] + check_character(partner["credit_code"])
        institution = Institution.objects.filter(credit_code=credit_code).first()
        for slug, modes in DEMO_SUBSCRIPTIONS[partner["type"]]:
            line = {"institution": partner["english_name"], "dataset": slug}
            dataset = Dataset.objects.filter(slug=slug, is_active=True).first()
            if institution is None:
                line["outcome"] = "skipped: the demo partner does not exist (run create_demo_partners)"
            elif dataset is None:
                line["outcome"] = "skipped: the dataset is not in the catalog (run sync_datasets)"
            elif Subscription.objects.filter(
                institution=institution, dataset=dataset, status=Subscription.Status.APPROVED, expires_at__gt=now
            ).exists():
                line["outcome"] = "unchanged"
            else:
                subscriptions.grant(
                    institution,
                    dataset,
                    modes=modes,
                    plan=plan,
                    expires_at=subscriptions.default_expiry(now),
                    purpose=DEMO_PURPOSE,
                    notify=False,
                )
                line["outcome"] = "granted"
            results.append(line)
    return results
