"""Building blocks for catalog and grant tests: the demo datasets with small real versions, the
suite's cast of personas, bearer tokens.

The datasets come from the real spec files (synced as `sync_datasets` does);
their versions are tiny Parquet files written straight into a per-test store,
with the statistics the build would compute, so a test needs no build.

Loaded as a pytest plugin by tests/conftest.py, so its fixtures are available to every
test by name; the plain helpers (`approved`, `auth`, `bearer_token`, ...) are imported.

The cast of the whole suite, stated here and nowhere else: each name is one person, with one
institution and one role. A test that changes a role or a status (bob promoted to admin, the
fund suspended) does so in its own body; the table says where everyone starts.

========== ==================================== ===========================================================
name       institution                          role: what they are for
========== ==================================== ===========================================================
olga       the platform (vitamin.example)       staff: reviews applications and subscriptions, decides them
alice      the fund (Demo Fund Management Co.)  owner: requests access, manages members, clients and tokens
bob        the fund                             analyst: reads and queries; may not request or manage
carol      the fund                             viewer: catalog only (fixture and membership in
                                                tests/oauth/conftest.py; joins by invitation elsewhere)
dave       the bank (Demo Commercial Bank)      owner: the other institution, outside the fund's
                                                subscriptions and clients; files the bank's applications
irene      an insurer                           owner of the institution the admin commands create
mallory    none                                 signed-in outsider: tries pages and links meant for others
Wang Fang  her own fund company                 newcomer: signs up on the portal, applies, becomes owner
Li Lei     Wang Fang's fund company             the colleague she invites
========== ==================================== ===========================================================

Tests of the SQL engine below Django (tests/query with tests/query_support.py) act for
institutions, not people: `FUND` and `BANK` there are the fund's and the bank's re-keying keys.
Quota tests charge the subject "fund"; audit tests record olga and dave by bare username, and
their throwaway users are all "newcomer".
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from datetime import timedelta
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from django.db import connection
from django.utils import timezone
from partner_support import add_member, make_client, make_institution, make_user

from access import subscriptions
from access.models import QuotaPlan
from catalog.models import Dataset, DatasetVersion
from catalog.sync import load_catalog_specs, sync_datasets
from datasets.storage import Store
from institutions.models import InstitutionType, Role
from oauth.credentials import hash_secret
from oauth.models import GrantType, Token

AGGREGATE_K = 10  # card_transactions' spec: groups with fewer distinct buyers are suppressed


# --- datasets and versions -------------------------------------------------------------


@functools.cache
def _demo_specs():
    return load_catalog_specs()  # validating them takes a while; they do not change during a run


def sync_demo_datasets() -> dict[str, Dataset]:
    """The four demo datasets, from the real spec files."""
    sync_datasets(_demo_specs())
    return {dataset.slug: dataset for dataset in Dataset.objects.all()}


def publish_table(dataset: Dataset, table: pa.Table, store_url: str) -> DatasetVersion:
    """Write `table` as the dataset's next version and record it as the refresh pipeline would."""
    number = (dataset.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    store = Store.from_url(store_url)
    location = f"datasets/{dataset.slug}/v{number}"
    path = store.path(location, "part-0.parquet")
    store.fs.create_dir(store.path(location), recursive=True)
    pq.write_table(table, path, filesystem=store.fs)
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=number,
        location=location,
        files=[{"path": "part-0.parquet", "size_bytes": store.size_bytes(path), "sha256": store.sha256(path)}],
        row_count=table.num_rows,
        bytes=store.size_bytes(path),
        schema=[{"name": field.name, "type": str(field.type)} for field in table.schema],
        schema_hash=f"schema-{dataset.slug}",
        content_hash=secrets.token_hex(16),
        column_stats={name: _stats(table[name]) for name in table.column_names},
        privacy_report={"k_required": 10, "k_achieved": 12, "rows_suppressed": 3, "passed": True},
        source_watermark="2025-12-31",
        pseudonym_release="r1",
        spec=dataset.spec,
        spec_fingerprint=dataset.spec_hash,
    )


def _stats(column: pa.ChunkedArray) -> dict:
    extremes = pc.min_max(column)
    return {
        "null_count": column.null_count,
        "distinct_approx": pc.count_distinct(column).as_py(),
        "min": _plain(extremes["min"].as_py()),
        "max": _plain(extremes["max"].as_py()),
    }


def _plain(value):
    return value.isoformat() if isinstance(value, dt.date) else value


def industry_table() -> pa.Table:
    months = [dt.date(2025, month, 1) for month in (1, 2, 3)]
    industries = ["主要消费", "信息技术"]
    rows = [(industry, month) for month in months for industry in industries]
    return pa.table(
        {
            "csi_industry": [industry for industry, _ in rows],
            "month": pa.array([month for _, month in rows], pa.date32()),
            "gmv": [1000.0 + index for index in range(len(rows))],
            "orders": [10 + index for index in range(len(rows))],
            "buyers": [10] * len(rows),
            "avg_ticket": [100.0] * len(rows),
            "supply_demand": [0.5] * len(rows),
            "mom_growth": [None, None] + [0.01] * (len(rows) - 2),
            "yoy_growth": pa.array([None] * len(rows), pa.float64()),
        }
    )


# Buyers per channel: "mobile" has fewer than AGGREGATE_K, so the preview must suppress it.
CHANNEL_BUYERS = {"pos": 12, "online": 10, "mobile": 3}


def card_transactions_table() -> pa.Table:
    rows = []
    for channel, buyers in CHANNEL_BUYERS.items():
        for buyer in range(buyers):
            for month in (1, 2):
                rows.append((f"{channel}-buyer-{buyer:02d}-pseudonym", channel, dt.date(2025, month, 1)))
    return pa.table(
        {
            "buyer": [buyer for buyer, _, _ in rows],
            "age_band": ["25-34"] * len(rows),
            "gender": ["F"] * len(rows),
            "province": ["浙江省"] * len(rows),
            "month": pa.array([month for _, _, month in rows], pa.date32()),
            "category": ["餐饮"] * len(rows),
            "csi_industry": ["主要消费"] * len(rows),
            "channel": [channel for _, channel, _ in rows],
            "amount": [100.0] * len(rows),
        }
    )


def credit_profiles_table() -> pa.Table:
    return pa.table(
        {
            "customer": ["customer-pseudonym-1", "customer-pseudonym-2"],
            "age_band": ["30-39", "40-49"],
            "gender": ["F", "M"],
            "province": ["浙江省", "上海市"],
            "income_band": ["10k-20k", "20k-50k"],
            "loans_count": pa.array([1, 2], pa.int32()),
            "on_time_ratio": [0.98, 0.9],
            "max_days_past_due": pa.array([0, 12], pa.int32()),
            "credit_utilization": [0.2, 0.5],
            "account_age_months": pa.array([30, 80], pa.int32()),
            "credit_score": pa.array([720, 610], pa.int32()),
        }
    )


# --- personas ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def store_url(tmp_path, settings) -> str:
    settings.STORE_URL = str(tmp_path / "store")
    return settings.STORE_URL


@pytest.fixture
def demo_datasets(db) -> SimpleNamespace:
    """The demo datasets without any version: enough for subscriptions."""
    datasets = sync_demo_datasets()
    return SimpleNamespace(
        industry=datasets["industry_prosperity_monthly"],
        stocks=datasets["stock_attention_daily"],
        cards=datasets["card_transactions"],
        credit=datasets["credit_profiles"],
    )


@pytest.fixture
def catalog(db, store_url) -> SimpleNamespace:
    """The demo datasets, each with one small published version (lookup data too)."""
    datasets = sync_demo_datasets()
    publish_table(datasets["industry_prosperity_monthly"], industry_table(), store_url)
    publish_table(datasets["card_transactions"], card_transactions_table(), store_url)
    publish_table(datasets["credit_profiles"], credit_profiles_table(), store_url)
    return SimpleNamespace(
        industry=datasets["industry_prosperity_monthly"],
        stocks=datasets["stock_attention_daily"],  # no version yet
        cards=datasets["card_transactions"],
        credit=datasets["credit_profiles"],
    )


# The cast of the module docstring: one fixture per person, and the two institutions.


@pytest.fixture
def olga(db):
    return make_user("olga@vitamin.example", staff=True)


@pytest.fixture
def alice(db):
    return make_user("alice@fund.example")


@pytest.fixture
def bob(db):
    return make_user("bob@fund.example")


@pytest.fixture
def dave(db):
    return make_user("dave@bank.example")


@pytest.fixture
def irene(db):
    return make_user("irene@insurer.example")


@pytest.fixture
def fund(alice, bob):
    institution = make_institution("Demo Fund Management Co.", 1, owner=alice)
    add_member(institution, bob, Role.ANALYST)
    return institution


@pytest.fixture
def bank(dave):
    return make_institution("Demo Commercial Bank", 2, owner=dave, type=InstitutionType.BANK)


@pytest.fixture
def plan(db) -> QuotaPlan:
    return QuotaPlan.objects.create(
        name="standard",
        queries_per_day=100,
        rows_returned_per_day=1000,
        bytes_scanned_per_day=10**9,
        bytes_downloaded_per_day=10**9,
        lookups_per_day=50,
        concurrent_queries=1,
        max_query_seconds=30,
        max_result_rows=500,
    )


# --- subscriptions and tokens ---------------------------------------------------------------


def approved(institution, dataset, plan, modes, *, days: int = 30, by=None):
    """An approved subscription, requested and approved through the state machine."""
    subscription = subscriptions.request_access(institution, dataset, modes=modes, purpose="Index research.", plan=plan)
    return subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=days), by=by)


def bearer_token(institution, *, scopes: str | None = None, user=None) -> str:
    """A live access token of a new client of `institution` (for `user`, as a tool acting for a member)."""
    client, _ = make_client(institution, name=f"Client {secrets.token_hex(3)}")
    value = secrets.token_urlsafe(32)
    Token.objects.create(
        client=client,
        user=user,
        grant_type=GrantType.AUTHORIZATION_CODE if user else GrantType.CLIENT_CREDENTIALS,
        scope=scopes if scopes is not None else client.scope,
        access_token_hash=hash_secret(value),
        access_expires_at=timezone.now() + timedelta(hours=1),
    )
    return value


def auth(token: str) -> dict[str, str]:
    """Keyword arguments for Django's test client."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def close_as_a_server_does(response, monkeypatch) -> None:
    """Close an answer read partly, as a server does when its client went away, keeping the test's database
    connection (the request's end would close it; the test client keeps it for a body read to its end)."""
    with monkeypatch.context() as patched:
        patched.setattr(connection, "close_if_unusable_or_obsolete", lambda: None)
        response.close()
