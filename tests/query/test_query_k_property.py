"""Property-based attacks on the aggregate tier's k threshold, run on the engine below the API.

Hypothesis writes aggregate queries from the grammar the tier allows, including expressions that
raise on some rows or groups, and runs each against two versions of `cards` that differ only in
provinces with fewer than k buyers (and in how they are laid out: see `versions`). Every generated query groups by province, so those rows can
only ever fall in groups below k. Two properties must hold for every query:

- the answer (rows, or the error's code and message) is the same for both versions;
- every row released belongs to a group with at least k distinct buyers in the underlying data,
  recounted here with plain DuckDB.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_support import FUND, K

from datasets.query.errors import QueryError
from datasets.query.limits import Limits
from datasets.query.sandbox import view_sql
from datasets.spec import ENTITY_BUCKET_COLUMN, entity_bucket_sql


def _rows(variant: int) -> list[dict]:
    """`cards`-like rows: provinces big (5 buyers) and edge (3) are the same in both variants;
    small (2) and lonely (1), and in variant 1 also ghost (2), differ."""
    rows = []

    def add(province, buyer, amount, category="food", month="2024-01", times=1):
        rows.extend(
            {"province": province, "month": month, "category": category, "buyer": buyer, "phone": "p", "amount": amount}
            for _ in range(times)
        )

    for i in range(5):
        add("big", f"big-{i}", 10.0 + i, category=["food", "travel"][i % 2], times=2)
        add("big", f"big-{i}", 7.0, month="2024-02")
    for i in range(3):
        add("edge", f"edge-{i}", 20.0)
    if variant == 0:
        add("small", "pad", 1.0, times=50)
        add("small", "small-1", 1000.0)
        add("lonely", "lonely-1", 99.0, category="travel")
    else:
        add("small", "other-1", 390.0, category="travel", month="2024-02")
        add("small", "other-2", -5.0)
        add("lonely", "lonely-2", 0.0)
        add("ghost", "ghost-1", 1e9, times=3)
        add("ghost", "ghost-2", 2147483647.0, category="travel")
    return rows


@pytest.fixture(scope="module")
def versions(bindings, store_root: Path):
    """Variant 0 laid out as versions published before the entity bucket was stored (the engine
    computes it), variant 1 as versions published since: the layouts must not change an answer."""
    out = []
    for variant in (0, 1):
        folder = store_root / "datasets" / "cards-variants" / f"v{variant}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "part-0.parquet"
        rows = pa.Table.from_pylist(_rows(variant))
        if variant == 1:
            bucket = duckdb.connect().sql(f"SELECT {entity_bucket_sql('buyer')} AS b FROM rows").to_arrow_table()
            rows = rows.append_column(ENTITY_BUCKET_COLUMN, bucket.column("b"))
        pq.write_table(rows, path)
        out.append(dataclasses.replace(bindings["cards"], files=(str(path),), size_bytes=path.stat().st_size))
    return out


# -- the grammar ----------------------------------------------------------------------------------

PROVINCES = ["big", "edge", "small", "lonely", "ghost", "nowhere"]
CATEGORIES = ["food", "travel"]
DIMENSION_EXTRAS = ["month", "category", "upper(category)", "left(month, 4)", "coalesce(category, 'none')"]


# Expressions that raise when {cond} holds, on a row and on a group. Size-explosive ones are left to
# test_query_k_oracle_api: on a released group they are allowed and bounded by time and memory, so
# their outcome depends on timing, not on k.
ROW_RAISERS = [
    "CAST(CASE WHEN {cond} THEN 'x' ELSE '1' END AS INTEGER) = 1",
    "1 // CASE WHEN {cond} THEN 0 ELSE 1 END = 1",
    "chr(CASE WHEN {cond} THEN -1 ELSE 65 END) = 'A'",
    "CAST(CASE WHEN {cond} THEN concat('v=', province, category) ELSE '7' END AS INTEGER) > 0",
]
GROUP_RAISERS = [
    "CAST(CASE WHEN {cond} THEN 'boom' ELSE '1' END AS INTEGER)",
    "CAST(CASE WHEN {cond} THEN concat_ws('|', province, sum(amount), count(*)) ELSE '1' END AS INTEGER)",
    "(10 // CASE WHEN {cond} THEN 0 ELSE 1 END)",
    "abs(CAST(CASE WHEN {cond} THEN 2147483647 ELSE 0 END AS INTEGER) + CAST(1 AS INTEGER))",
]


def raising(templates: list[str]):
    return lambda cond: st.sampled_from([template.format(cond=cond) for template in templates])


row_condition = st.one_of(
    st.sampled_from(PROVINCES).map(lambda p: f"province = '{p}'"),
    st.sampled_from(CATEGORIES).map(lambda c: f"category = '{c}'"),
    st.sampled_from(["month LIKE '2024%'", "month = '2024-02'", "province IN ('small', 'lonely', 'ghost')"]),
)
row_predicate = st.recursive(
    st.one_of(row_condition, row_condition.flatmap(raising(ROW_RAISERS))),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} AND {pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} OR {pair[1]})"),
        inner.map(lambda p: f"NOT ({p})"),
    ),
    max_leaves=4,
)
aggregate = st.sampled_from(["count(*)", "count(DISTINCT buyer)", "sum(amount)", "avg(amount)", "count(amount)"])
group_condition = st.one_of(
    st.integers(0, 6).map(lambda n: f"count(DISTINCT buyer) = {n}"),
    st.integers(0, 60).map(lambda n: f"count(*) < {n}"),
    st.sampled_from([0, 99, 390, 1000, 10**9]).map(lambda v: f"sum(amount) > {v}"),
)


group_value = st.one_of(
    aggregate,
    st.tuples(aggregate, aggregate).map(lambda pair: f"({pair[0]} + {pair[1]})"),
    aggregate.map(lambda a: f"CAST({a} AS INTEGER)"),
    group_condition.flatmap(raising(GROUP_RAISERS)),
)


@st.composite
def aggregate_queries(draw) -> tuple[str, list[str], str | None]:
    extras = draw(st.lists(st.sampled_from(DIMENSION_EXTRAS), max_size=2, unique=True))
    groups = ["province", *extras]
    values = draw(st.lists(group_value, min_size=1, max_size=3))
    where = draw(st.none() | row_predicate)
    having = draw(st.none() | group_value.map(lambda v: f"{v} > 0") | group_condition)
    order = draw(st.none() | group_value | st.just("1"))
    limit = draw(st.none() | st.integers(1, 5))
    select = ", ".join(
        [*(f"{g} AS k{i}" for i, g in enumerate(groups)), *(f"{v} AS v{i}" for i, v in enumerate(values))]
    )
    sql = f"SELECT {select} FROM cards"
    if where:
        sql += f" WHERE {where}"
    sql += f" GROUP BY {', '.join(groups)}"
    if having:
        sql += f" HAVING {having}"
    if order:
        sql += f" ORDER BY {order}, 1, 2"
    if limit:
        sql += f" LIMIT {limit}"
    return sql, groups, where


def outcome(gateway, binding, sql: str):
    try:
        result = gateway.run(sql, {"cards": binding}, FUND.key, Limits(max_query_seconds=20, max_result_rows=1000))
        with result:
            table = pa.Table.from_batches(list(result.record_batches()), schema=result.schema)
    except QueryError as error:
        return ("error", str(error.code), error.message)
    # Compared in the order returned: even without ORDER BY, which rows come first (and which a
    # LIMIT keeps) must not depend on a group below k.
    return ("rows", table.column_names, [tuple(row.values()) for row in table.to_pylist()])


def released_keys(binding, groups: list[str], where: str | None) -> set[tuple]:
    """Group keys with at least k distinct buyers after WHERE (each predicate under TRY, as the tier does)."""
    files = ", ".join(f"'{path}'" for path in binding.files)
    keys = ", ".join(groups)
    condition = f"TRY({where})" if where else "true"
    sql = (
        f"SELECT {keys} FROM read_parquet([{files}]) WHERE {condition} "
        f"GROUP BY {keys} HAVING count(DISTINCT buyer) >= {K}"
    )
    return set(duckdb.connect().sql(sql).fetchall())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=aggregate_queries())
def test_no_answer_depends_on_a_group_below_k_and_every_released_group_has_k_entities(gateway, versions, query):
    sql, groups, where = query
    first, second = (outcome(gateway, binding, sql) for binding in versions)
    assert first == second, f"the answer depends on a group below k:\n{sql}\n{first}\n{second}"
    if first[0] == "rows":
        released = released_keys(versions[0], groups, where)
        for row in first[2]:
            assert tuple(row[: len(groups)]) in released, f"{sql}\nreleased a group below k: {row}"


def test_the_stored_bucket_is_used_and_stays_out_of_reach(gateway, versions):
    assert ENTITY_BUCKET_COLUMN in view_sql(versions[1], FUND.key, stored_bucket=True)
    assert "hash(" not in view_sql(versions[1], FUND.key, stored_bucket=True)
    assert "hash(" in view_sql(versions[0], FUND.key)
    session = gateway._sandbox.acquire()
    try:
        session.bind([versions[1]], FUND.key)
        (definition,) = session.cursor.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'cards'").fetchone()
        assert ENTITY_BUCKET_COLUMN in definition and "hash(" not in definition  # read, not computed per row
        session.bind([versions[0]], FUND.key)
        (definition,) = session.cursor.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'cards'").fetchone()
        assert ENTITY_BUCKET_COLUMN not in definition and "hash(" in definition
    finally:
        gateway._sandbox.release(session)
    for column in (ENTITY_BUCKET_COLUMN, "__vitamin_entity_bit"):
        for sql in (
            f"SELECT province, max({column}) AS v FROM cards GROUP BY province",
            f"SELECT {column} AS v, count(*) AS n FROM cards GROUP BY {column}",
            f"SELECT province, count(*) AS n FROM cards WHERE {column} > 3 GROUP BY province",
        ):
            refused = outcome(gateway, versions[1], sql)
            assert refused[0] == "error" and refused[1] in {"column_not_allowed", "unknown_column", "query_error"}, sql


def test_the_generator_reaches_both_answers_and_errors(gateway, versions):
    """The property above is not vacuous: the grammar yields answered queries, with rows, and errors."""
    answered = outcome(gateway, versions[0], "SELECT province AS k0, count(*) AS v0 FROM cards GROUP BY province")
    assert answered[0] == "rows" and {row[0] for row in answered[2]} == {"big", "edge"}
    failing = outcome(
        gateway,
        versions[0],
        "SELECT province AS k0, CAST(CASE WHEN count(*) > 0 THEN 'boom' ELSE '1' END AS INTEGER) AS v0 "
        "FROM cards GROUP BY province",
    )
    assert failing[0] == "error" and failing[1] == "query_error"  # raised, but on released groups only
