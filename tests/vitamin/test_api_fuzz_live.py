"""Schemathesis against a live server: every operation of /api/schema/, fuzzed with a valid token, never a 5xx.

The demo datasets are published and the fund subscribes to all of them, so generated requests
reach the views and services rather than stopping at the grant check. Examples are bounded per
operation (FUZZ_EXAMPLES) to keep the run within a couple of minutes on two cores.
"""

from __future__ import annotations

import pytest
import schemathesis
from catalog_support import approved, bearer_token
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from access.models import QuotaPlan
from datasets.spec import Mode

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUZZ_EXAMPLES = 25
# Half the examples name what exists, so they reach past the 404s and the SQL parser.
SLUGS = ["industry_prosperity_monthly", "card_transactions", "credit_profiles", "stock_attention_daily"]
SQL = [
    "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1",
    "SELECT channel, COUNT(DISTINCT buyer) AS buyers FROM card_transactions GROUP BY channel",
    "SELECT * FROM industry_prosperity_monthly",
    "SELECT 1",
    "WITH card_transactions AS (SELECT 1) SELECT * FROM card_transactions",
    "SELECT * FROM credit_profiles",
]


@pytest.fixture
def generous_plan(db) -> QuotaPlan:
    """Quotas the fuzzer will not exhaust, so its later examples are not all 429s."""
    return QuotaPlan.objects.create(
        name="fuzz",
        queries_per_day=10**6,
        rows_returned_per_day=10**9,
        bytes_scanned_per_day=10**12,
        bytes_downloaded_per_day=10**12,
        lookups_per_day=10**6,
        concurrent_queries=4,
        max_query_seconds=5,
        max_result_rows=1000,
    )


@pytest.fixture
def fund_token(fund, catalog, generous_plan) -> str:
    approved(fund, catalog.industry, generous_plan, [Mode.QUERY, Mode.DOWNLOAD])
    approved(fund, catalog.cards, generous_plan, [Mode.QUERY])
    approved(fund, catalog.credit, generous_plan, [Mode.LOOKUP])
    return bearer_token(fund)


def test_no_operation_answers_a_server_error(live_server, fund_token, settings_dir):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    headers = {"Authorization": f"Bearer {fund_token}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=st.one_of(operation.as_strategy(), _seeded(operation)))
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure, fast
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            case.call_and_validate(base_url=live_server.url, headers=headers, checks=[not_a_server_error], timeout=30)

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then fail once
            failures[operation.label] = str(exc)[:2000]

    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _seeded(operation):
    """Cases of `operation` with a real dataset slug in the path, or a real query in the body."""
    strategy = operation.as_strategy()
    if "{slug}" in operation.path:
        return st.builds(_with_path_parameter, strategy, st.just("slug"), st.sampled_from(SLUGS))
    if operation.method.upper() == "POST" and operation.path.endswith(("/query", "/jobs")):
        return st.builds(_with_sql, strategy, st.sampled_from(SQL))
    return strategy


def _with_path_parameter(case, name: str, value: str):
    case.path_parameters = {**(case.path_parameters or {}), name: value}
    return case


def _with_sql(case, sql: str):
    if isinstance(case.body, dict):
        case.body = {**case.body, "sql": sql}
    return case


@pytest.fixture
def settings_dir(settings, tmp_path):
    """Job results and the Celery file queue in a folder of this test."""
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR
