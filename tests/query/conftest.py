"""A small Parquet store, a gateway over it, and two partners.

Datasets (all real Parquet files, written with pyarrow):

- `cards` (aggregate, k = 3, entity `buyer`, identifier `phone`): groups built to
  sit on either side of k — `big` has 5 buyers, `edge` exactly 3, `small` 2
  buyers padded with 50 rows of one of them, `lonely` 1 buyer.
- `categories` (open): each category repeated 10 times, to fan joins out.
- `people`, `accounts` (open): identifying columns (`customer` entity, `phone`
  identifier) that must reach partners re-keyed.
- `numbers` (open): 30,000 integers, for runaway cross joins.

The partners (`FUND`, `BANK`: the fund and the bank of the suite's cast) are in tests/query_support.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from query_support import FUND, K, Partner

from datasets.query.bindings import DatasetBinding
from datasets.query.gateway import Gateway
from datasets.query.limits import Limits
from datasets.query.sandbox import SandboxConfig
from datasets.spec import AnalysisSpec


def _cards_rows() -> list[dict]:
    rows = []

    def add(province: str, buyer: str, amount: float, times: int = 1, category: str = "food") -> None:
        for _ in range(times):
            rows.append(
                {
                    "province": province,
                    "month": "2024-01",
                    "category": category,
                    "buyer": buyer,
                    "phone": f"phone-of-{buyer}",
                    "amount": amount,
                }
            )

    for i in range(5):
        add("big", f"b-big-{i}", 10.0, times=2)
    for i in range(3):
        add("edge", f"b-edge-{i}", 20.0)
    add("small", "b-pad", 1.0, times=50)  # one buyer, many rows: padding
    add("small", "b-small", 1000.0)
    add("lonely", "b-lonely", 99.0, category="travel")
    return rows


def _write(root: Path, slug: str, table: pa.Table, files: int = 1) -> tuple[str, ...]:
    folder = root / "datasets" / slug / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    step = -(-table.num_rows // files)
    for index in range(files):
        path = folder / f"part-{index}.parquet"
        pq.write_table(table.slice(index * step, step), path, row_group_size=10_000)
        paths.append(str(path))
    return tuple(paths)


def _binding(slug: str, files: tuple[str, ...], tier: str, columns: dict[str, str], **extra) -> DatasetBinding:
    size = sum(Path(f).stat().st_size for f in files)
    return DatasetBinding(slug, 1, tier, files, columns, size_bytes=size, **extra)


@pytest.fixture(scope="session")
def store_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("query-store")


@pytest.fixture(scope="session")
def bindings(store_root: Path) -> dict[str, DatasetBinding]:
    cards = _write(store_root, "cards", pa.Table.from_pylist(_cards_rows()))
    categories = _write(
        store_root,
        "categories",
        pa.table({"category": ["food", "travel"] * 10, "sector": ["consumer", "leisure"] * 10}),
    )
    people = _write(
        store_root,
        "people",
        pa.table(
            {
                "customer": [f"cust-{i}" for i in range(20)],
                "phone": [f"1380000{i:04d}" for i in range(20)],
                "city": ["Hangzhou", "Shanghai"] * 10,
                "balance": [float(i * 100) for i in range(20)],
            }
        ),
        files=2,
    )
    accounts = _write(
        store_root,
        "accounts",
        pa.table({"customer": [f"cust-{i}" for i in range(0, 20, 2)], "bank": ["ICBC", "CMB"] * 5}),
    )
    numbers = _write(store_root, "numbers", pa.table({"n": pa.array(range(30_000), pa.int64())}))
    analysis = AnalysisSpec(
        aggregates=("count", "count_distinct", "sum", "avg"),
        dimensions=("province", "month", "category"),
        measures=("amount",),
        join_keys=("category",),
        min_entities=K,
    )
    cards_columns = {
        "province": "quasi",
        "month": "dimension",
        "category": "dimension",
        "buyer": "entity",
        "phone": "identifier",
        "amount": "measure",
    }
    return {
        "cards": _binding("cards", cards, "aggregate", cards_columns, entity="buyer", analysis=analysis),
        "categories": _binding("categories", categories, "open", {"category": "dimension", "sector": "dimension"}),
        "people": _binding(
            "people",
            people,
            "open",
            {"customer": "entity", "phone": "identifier", "city": "public", "balance": "measure"},
        ),
        "accounts": _binding("accounts", accounts, "open", {"customer": "entity", "bank": "public"}),
        "numbers": _binding("numbers", numbers, "open", {"n": "measure"}),
    }


@pytest.fixture(scope="session")
def gateway(store_root: Path, tmp_path_factory) -> Iterator[Gateway]:
    gateway = Gateway(
        SandboxConfig(
            store_root=str(store_root),
            temp_directory=str(tmp_path_factory.mktemp("query-tmp")),
            memory_limit_bytes=256 * 1024**2,
            threads=2,
            max_temp_directory_bytes=256 * 1024**2,
            max_concurrent_queries=2,
            queue_timeout_seconds=2,
        )
    )
    yield gateway
    gateway.close()


@pytest.fixture
def run(gateway: Gateway, bindings: dict[str, DatasetBinding]):
    """Run SQL as a partner and return (column names, rows as tuples); the connection is always given back."""

    def run(sql: str, partner: Partner = FUND, limits: Limits | None = None, only: tuple[str, ...] | None = None):
        granted = {slug: b for slug, b in bindings.items() if only is None or slug in only}
        result = gateway.run(sql, granted, partner.key, limits or Limits())
        with result:
            batches = list(result.record_batches())
            table = pa.Table.from_batches(batches, schema=result.schema)
        return table.column_names, [tuple(row.values()) for row in table.to_pylist()]

    return run
