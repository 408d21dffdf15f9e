"""Shared pieces for the dataset library tests: an in-memory Arrow source, people with real-looking identifiers,
a base spec to vary, and a fresh local store.

`ArrowSource` is a real Connector (the same interface the pipeline reads) over an
Arrow table held in memory: a test source, not a stand-in for something that could run.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from connectors.base import Connector, ConnectorError
from datasets.storage import Store

MASTER_KEY = b"test-master-key-0123456789abcdef"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CITIES = ("杭州市", "广州市", "北京市", "成都市", "西安市")
_SURNAMES = "王李张刘陈杨黄赵吴周"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


class ArrowSource(Connector):
    """Batches of an in-memory table; optionally sleeps before each batch after the first few, or fails midway."""

    kind = "arrow_test"

    def __init__(self, table: pa.Table, *, batch_rows: int = 1000, sleep_seconds: float = 0.0, fail_after_batches=None):
        super().__init__({}, batch_rows=batch_rows)
        self.table = table
        self.sleep_seconds = sleep_seconds
        self.fail_after_batches = fail_after_batches

    def schema(self) -> pa.Schema:
        return self.table.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        for index, batch in enumerate(self.table.to_batches(max_chunksize=self.batch_rows)):
            if self.fail_after_batches is not None and index == self.fail_after_batches:
                raise ConnectorError("the source went away", transient=True)
            if self.sleep_seconds and index >= 2:
                time.sleep(self.sleep_seconds)
            yield batch

    def watermark(self) -> str | None:
        return "test-watermark"


def resident_id(rng: random.Random) -> str:
    """An 18-character resident ID with a real birth date and a valid check character."""
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 50))
    body = f"{rng.choice(('110105', '330106', '440103', '510104'))}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def make_people(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    people = []
    for _ in range(count):
        id_number = resident_id(rng)
        people.append(
            {
                "id_number": id_number,
                "name": rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2)))),
                "phone": f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
                "birth_date": dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14])),
                "gender": rng.choice("FM"),
                "city": rng.choice(_CITIES),
            }
        )
    return people


def make_transactions(rows: int, people: int = 300, seed: int = 7) -> pa.Table:
    """Transactions by `people` people: identifiers, quasi-identifiers, a timestamp and an amount per row."""
    rng = random.Random(seed)
    population = make_people(people, seed)
    chosen = [population[rng.randrange(people)] for _ in range(rows)]
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "txn_id": pa.array(range(rows), pa.int64()),
            "txn_time": pa.array(
                [start + dt.timedelta(minutes=37 * i) for i in range(rows)], pa.timestamp("ms", tz="Asia/Shanghai")
            ),
            "id_number": [p["id_number"] for p in chosen],
            "name": [p["name"] for p in chosen],
            "phone": [p["phone"] for p in chosen],
            "birth_date": pa.array([p["birth_date"] for p in chosen], pa.date32()),
            "gender": [p["gender"] for p in chosen],
            "city": [p["city"] for p in chosen],
            "amount": [round(rng.uniform(1, 2000), 2) for _ in range(rows)],
        }
    )


BASE_SPEC = {
    "slug": "card_test",
    "title": "Card test",
    "description": "Transactions for tests.",
    "publisher": "Vitamin tests",
    "contact": "tests@vitamin.example",
    "license": "Test terms.",
    "keywords": ["test"],
    "theme": "tests",
    "tier": "aggregate",
    "update_frequency": "daily",
    "schedule": "0 3 * * *",
    "source": {"kind": "arrow_test", "options": {}},
    "columns": [
        {"name": "buyer", "from": "id_number", "role": "entity", "action": "pseudonymize", "description": "Buyer."},
        {"name": "name", "role": "identifier", "action": "drop", "description": "Name."},
        {
            "name": "age_band",
            "from": "birth_date",
            "type": "string",
            "role": "quasi",
            "description": "Age band.",
            "generalize": {"rule": "age_band", "width": 10, "reference_date": "2025-01-01"},
        },
        {"name": "gender", "type": "string", "role": "quasi", "description": "Gender.", "generalize": {"rule": "keep"}},
        {
            "name": "province",
            "from": "city",
            "type": "string",
            "role": "quasi",
            "description": "Province.",
            "generalize": {"rule": "region", "level": "province"},
        },
        {
            "name": "month",
            "from": "txn_time",
            "type": "date",
            "role": "dimension",
            "description": "Month.",
            "generalize": {"rule": "truncate", "unit": "month"},
        },
        {
            "name": "amount",
            "type": "float64",
            "role": "measure",
            "description": "Amount.",
            "generalize": {"rule": "round", "step": 10},
        },
    ],
    "privacy": {"k": 3, "quasi_identifiers": ["age_band", "gender", "province"], "entity": "buyer"},
    "sort_by": ["month"],
    "analysis": {"aggregates": ["count", "count_distinct", "sum"]},
}


@pytest.fixture
def lookup_spec_data(spec_data) -> dict:
    """The base spec made a lookup dataset: `buyer` (a resident ID) is the key, `amount` a threshold field."""
    spec_data = copy.deepcopy(spec_data)
    for column in spec_data["columns"]:
        if column["name"] == "buyer":
            column["identifier"] = "resident_id"
    spec_data.update(
        tier="lookup",
        analysis=None,
        sort_by=["buyer"],
        lookup={"keys": ["buyer"], "thresholds": ["amount"], "consent_scope": "credit_assessment"},
    )
    return spec_data


@pytest.fixture
def spec_data() -> dict:
    """A valid aggregate spec as parsed YAML, for a test to change."""
    return copy.deepcopy(BASE_SPEC)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store.from_url(str(tmp_path / "store"))


@pytest.fixture
def scratch(tmp_path):
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def arrow_source() -> type[ArrowSource]:
    return ArrowSource


@pytest.fixture(scope="session")
def transactions():
    """make_transactions(rows, people=300, seed=7) -> pa.Table."""
    return make_transactions
