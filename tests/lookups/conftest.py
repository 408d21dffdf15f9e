"""A real `credit_profiles` version for the lookup tests: built once per session from the synthetic connector
with the real spec (CONSUMERS customers), then recorded in each test's database as the refresh would record it.

tests/lookup_support.py has the helpers: people (from the connector itself) and request bodies.
"""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from catalog_support import approved, bearer_token, sync_demo_datasets
from django.conf import settings as django_settings
from lookup_support import CONSUMERS, Person, people

from catalog.models import Dataset, DatasetVersion
from datasets.anonymize import PseudonymKey
from datasets.build import build, connector_for
from datasets.identifiers import digest
from datasets.publish import publish
from datasets.spec import load_spec
from datasets.storage import Store


@pytest.fixture(scope="session")
def credit_store(tmp_path_factory) -> SimpleNamespace:
    """The built and published version's store and summary (no database)."""
    root = tmp_path_factory.mktemp("lookup-store")
    spec = load_spec(django_settings.DATASET_SPECS_DIR / "credit_profiles.yaml", {"VITAMIN_DEMO_CONSUMERS": CONSUMERS})
    store = Store.from_url(str(root / "store"))
    result = build(
        spec,
        connector_for(spec),
        master_key=django_settings.PSEUDONYM_MASTER_KEY.encode(),
        release="r1",
        store=store,
        scratch_dir=root / "scratch",
    )
    publish(store, spec.slug, 1, result)
    return SimpleNamespace(url=str(root / "store"), spec=spec, result=result, summary=result.to_dict())


@pytest.fixture(scope="session")
def members(credit_store) -> list[Person]:
    """Consumers among the first 400 whose row was published (a few fall to k-anonymity suppression), found by
    reading the published files with pyarrow and the pseudonym function, not through any lookup code."""
    key = PseudonymKey.derive(django_settings.PSEUDONYM_MASTER_KEY.encode(), "credit_profiles", "r1")
    root = Store.from_url(credit_store.url).path("datasets/credit_profiles/v1")
    published = set(pq.read_table(f"{root}/part-0.parquet", columns=["customer"])["customer"].to_pylist())
    found = [person for person in people(range(400)) if key.pseudonym(digest(person.resident_id)) in published]
    assert len(found) > 350, "most consumers are published"
    return found


@pytest.fixture(scope="session")
def strangers() -> list[Person]:
    """Valid identifiers of consumers that exist nowhere."""
    return people(range(CONSUMERS, CONSUMERS + 50))


@pytest.fixture
def credit(db, settings, credit_store) -> DatasetVersion:
    """credit_profiles in the catalog with that version as v1."""
    settings.STORE_URL = credit_store.url
    dataset = sync_demo_datasets()["credit_profiles"]
    Dataset.objects.filter(pk=dataset.pk).update(pseudonym_release="r1")
    summary, result = credit_store.summary, credit_store.result
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        location="datasets/credit_profiles/v1",
        files=summary["files"],
        row_count=result.row_count,
        bytes=result.size_bytes,
        schema=summary["schema"],
        schema_hash=result.schema_hash,
        content_hash=result.content_hash,
        column_stats=summary["column_stats"],
        privacy_report=summary["privacy"],
        source_watermark=result.source_watermark or "",
        pseudonym_release="r1",
        spec=credit_store.spec.to_document(),
        spec_fingerprint=result.spec_fingerprint,
    )


@pytest.fixture
def bank_lookup(bank, plan, credit) -> SimpleNamespace:
    """The bank's approved lookup subscription to credit_profiles, and a token with scope `lookup`."""
    subscription = approved(bank, credit.dataset, plan, ["lookup"])
    return SimpleNamespace(subscription=subscription, token=bearer_token(bank, scopes="lookup"), institution=bank)
