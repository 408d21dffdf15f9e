"""Point reads of a lookup version: whatever the pseudonyms asked for, and whichever path answers (row-group
reads, or the scan of a large batch), the rows are exactly those a full read of the files finds."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.lookup import reader
from datasets.lookup.reader import LookupTable
from datasets.storage import Store

ROWS = 20_000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Data sorted by `customer` in row groups of 512 rows over two files, and a `mobile` index file."""
    root = tmp_path_factory.mktemp("lookup-reader")
    customers = [f"{i * 7919 % 1_000_003:032x}" for i in range(ROWS)]
    mobiles = [f"m{i * 104729 % 1_000_033:031x}" for i in range(ROWS)]
    table = pa.table({"customer": customers, "mobile": mobiles, "score": list(range(ROWS))}).sort_by("customer")
    half = ROWS // 2
    pq.write_table(table.slice(0, half), root / "part-0.parquet", row_group_size=512)
    pq.write_table(table.slice(half), root / "part-1.parquet", row_group_size=512)
    index = table.select(["mobile", "customer"]).sort_by("mobile")
    pq.write_table(index, root / "mobile.parquet", row_group_size=512)
    store = Store.from_url(str(root))
    lookup = LookupTable(
        fs=store.fs,
        data_paths=(str(root / "part-0.parquet"), str(root / "part-1.parquet")),
        primary_key="customer",
        index_paths={"mobile": str(root / "mobile.parquet")},
        cache_key=(str(root),),
    )
    return lookup, table


def _expected(table: pa.Table, key: str, wanted: set[str]) -> dict[str, int]:
    return {row[key]: row["score"] for row in table.to_pylist() if row[key] in wanted}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, ROWS - 1), max_size=120),
    strangers=st.lists(st.integers(10**7, 10**8), max_size=10),
    key=st.sampled_from(["customer", "mobile"]),
)
def test_find_returns_exactly_the_rows_of_the_pseudonyms(files, picks, strangers, key):
    lookup, table = files
    column = table[key].to_pylist()
    wanted = {column[i] for i in picks} | {f"{s:032x}" for s in strangers}
    found = lookup.find(key, wanted, ["score"])
    assert dict(zip(found[key].to_pylist(), found["score"].to_pylist(), strict=True)) == _expected(table, key, wanted)
    if key == "mobile":
        assert "customer" in found.column_names


def test_a_large_batch_is_answered_by_a_scan_with_the_same_rows(files, monkeypatch):
    lookup, table = files
    wanted = set(table["customer"].to_pylist()[::13])
    monkeypatch.setattr(reader, "SCAN_SHARE", 0)  # every batch scans
    scanned = lookup.find("customer", wanted, ["score"])
    monkeypatch.setattr(reader, "SCAN_SHARE", 2)  # every batch reads row groups
    point = lookup.find("customer", wanted, ["score"])
    assert scanned.sort_by("customer").equals(point.sort_by("customer"))
    assert point.num_rows == len(wanted)


def test_nothing_asked_is_an_empty_table_with_the_columns(files):
    lookup, _ = files
    for key in ("customer", "mobile"):
        found = lookup.find(key, set(), ["score"])
        assert found.num_rows == 0 and {key, "customer", "score"} <= set(found.column_names)
