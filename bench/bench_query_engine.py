"""The SQL gateway against raw in-process DuckDB on the same Parquet files and the same SQL.

    .venv/bin/python bench/bench_query_engine.py --rows 20000000

Generates a card_transactions-like dataset (province, month, category, channel,
buyer, amount) with N rows in 5M-row zstd Parquet files, then, in one run and
alternating the two sides, takes the median of each figure:

- aggregate:        SUM/COUNT by province, month on an open dataset (goal: ratio <= 1.15)
- aggregate (k):    the same on an aggregate dataset, whose k threshold (at least k distinct buyers per
                    group, decided exactly) the gateway enforces; compared with raw DuckDB without it
                    (the price of the rule: goal <= 2) and with the plain HAVING count(DISTINCT buyer) >= k
                    a hand-written query would use. Measured on files laid out as a publish writes them
                    (with the entity bucket column) and on files without it (versions published before)
- arrow 1M:         a 1M-row result as an Arrow IPC stream (goal: ratio <= 1.3)
- arrow 1M rekeyed: the same with the buyer column, which the gateway re-keys per partner (raw: no re-keying)
- json 1M:          the same rows as our JSON, against raw DuckDB's Arrow stream
- small query:      a selective COUNT, to show the fixed cost per query
- selective filter: ~120 rows of 20M (province, month, category and a minimum amount), on files laid out
                    as a spec's `sort_by` and `row_group_rows` declare them (written by the build's own Parquet
                    writer: sorted by month, province, category) and on the files as generated; raw DuckDB on
                    the laid-out files against raw DuckDB on the others shows what the layout buys, and the same
                    for the aggregate shows that the scan does not pay for it

The aggregate, arrow 1M and small-query figures are also taken through the isolated gateway
(`datasets.query.isolation.IsolatedGateway`: the query runs in a worker process under an address-space
cap, results cross as Arrow IPC), which is what the API uses, to show what isolation costs.

Each line reads `name: ours X ms, raw Y ms, ratio Z`. The raw side uses the
same thread count, memory limit, batch size and Parquet metadata cache.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import figures
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]

from datasets.build import _write_parquet  # noqa: E402
from datasets.query import formats  # noqa: E402
from datasets.query.bindings import DatasetBinding  # noqa: E402
from datasets.query.gateway import Gateway  # noqa: E402
from datasets.query.isolation import IsolatedGateway  # noqa: E402
from datasets.query.limits import Limits  # noqa: E402
from datasets.query.rekey import derive_partner_key  # noqa: E402
from datasets.query.results import BATCH_ROWS  # noqa: E402
from datasets.query.sandbox import SandboxConfig  # noqa: E402
from datasets.spec import (  # noqa: E402
    ENTITY_BUCKET_COLUMN,
    AnalysisSpec,
    ColumnSpec,
    DatasetSpec,
    SourceSpec,
    Tier,
    entity_bucket_sql,
)

ROWS_PER_FILE = 5_000_000
ROWS_PER_GROUP = 1_000_000
THREADS = 2
MEMORY_LIMIT_BYTES = 4 * 1024**3
K = 10
COLUMNS = {
    "province": "dimension",
    "month": "dimension",
    "category": "dimension",
    "channel": "dimension",
    "buyer": "entity",
    "amount": "measure",
}
AGGREGATE_SQL = "SELECT province, month, sum(amount) AS amount, count(*) AS n FROM {t} GROUP BY province, month"
K_HAVING = f" HAVING count(DISTINCT buyer) >= {K}"
ARROW_SQL = "SELECT province, month, category, channel, amount FROM {t} LIMIT 1000000"
REKEYED_SQL = "SELECT province, month, buyer, amount FROM {t} LIMIT 1000000"
SMALL_SQL = "SELECT count(*) AS n FROM {t} WHERE province = 'P07' AND month = '2024-03'"
# The selective filter of issue 15: a dashboard's "large transactions in one province, month and category",
# about 120 of 20M rows (6 of 1M). Laid out as LAYOUT declares, DuckDB reads one or two row groups of it.
SELECTIVE_SQL = (
    "SELECT province, month, category, channel, amount FROM {t} "
    "WHERE month = '2024-03' AND province = 'P07' AND category = 'category-03' AND amount >= 200"
)
# The publish-time layout for that filter, as a spec would declare it (sort_by, row_group_rows).
LAYOUT_SORT_BY = ("month", "province", "category")
LAYOUT_ROW_GROUP_ROWS = 245_760  # measured at 20M rows: the selective filter and the scan both best here


def with_entity_bucket(files: list[str], folder: Path) -> list[str]:
    """The same rows with the aggregate tier's entity bucket column, as `datasets.build` publishes them."""
    con = duckdb.connect(config={"threads": THREADS})
    out = []
    for path in files:
        target = folder / Path(path).name
        bucket = entity_bucket_sql("buyer")
        con.execute(
            f"COPY (SELECT *, {bucket} AS {ENTITY_BUCKET_COLUMN} FROM read_parquet('{path}')) TO '{target}' "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROWS_PER_GROUP})"
        )
        out.append(str(target))
    con.close()
    return out


def laid_out(files: list[str], folder: Path, row_group_rows: int = LAYOUT_ROW_GROUP_ROWS) -> list[str]:
    """The same rows written by the build's own Parquet writer with LAYOUT_SORT_BY and `row_group_rows`."""
    spec = DatasetSpec(
        slug="bench_cards", title="", description="", publisher="", contact="", license="", keywords=(),
        theme="", tier=Tier.OPEN, update_frequency="daily", schedule="", time_zone="UTC",
        source=SourceSpec("parquet", {}), transform=None,
        columns=tuple(ColumnSpec(name, name, role, "", "string") for name, role in COLUMNS.items()),
        privacy=None, partitioning=(), sort_by=LAYOUT_SORT_BY, versions_kept=1, analysis=None, lookup=None,
        row_group_rows=row_group_rows,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": THREADS, "memory_limit": f"{MEMORY_LIMIT_BYTES}B"})
    con.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet({files!r})")
    _write_parquet(con, spec, "source", folder, row_group_rows)
    con.close()
    return sorted(str(path) for path in folder.glob("*.parquet"))


def generate(rows: int, folder: Path) -> list[str]:
    """N rows of synthetic card transactions, written batch by batch (never whole in memory)."""
    rng = np.random.default_rng(2015)
    provinces = pa.array([f"P{i:02d}" for i in range(31)])
    months = pa.array([f"{2024 + m // 12}-{m % 12 + 1:02d}" for m in range(24)])
    categories = pa.array([f"category-{i:02d}" for i in range(20)])
    channels = pa.array(["pos", "online", "mobile", "atm"])
    buyers = pa.array([f"{x:032x}" for x in rng.integers(0, 2**63, max(1_000, rows // 10))])
    schema = pa.schema([(name, pa.float64() if name == "amount" else pa.string()) for name in COLUMNS])
    files = []
    for start in range(0, rows, ROWS_PER_FILE):
        path = folder / f"part-{len(files):03d}.parquet"
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for group_start in range(start, min(rows, start + ROWS_PER_FILE), ROWS_PER_GROUP):
                n = min(ROWS_PER_GROUP, rows - group_start)
                writer.write_batch(
                    pa.record_batch(
                        [
                            provinces.take(rng.integers(0, len(provinces), n)),
                            months.take(np.sort(rng.integers(0, len(months), n))),
                            categories.take(rng.integers(0, len(categories), n)),
                            channels.take(rng.integers(0, len(channels), n)),
                            buyers.take(rng.integers(0, len(buyers), n)),
                            pa.array(np.round(rng.gamma(2.0, 50.0, n), 2)),
                        ],
                        schema=schema,
                    )
                )
        files.append(str(path))
    return files


class _Sink(io.RawIOBase):
    """Keeps what the IPC writer writes, handed on per batch: the work a streaming server does too."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def medians_ms(*funcs: Callable[[], object], repeat: int) -> list[float]:
    """Median wall time of each function, run in turn (so drift on a shared machine hits all alike)."""
    for func in funcs:
        func()  # warm-up: Parquet metadata cache, OS page cache, views
    samples: list[list[float]] = [[] for _ in funcs]
    for _ in range(repeat):
        for func, times in zip(funcs, samples, strict=True):
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) * 1000 for times in samples]


def report(name: str, ours_ms: float, raw_ms: float, goal: float | None = None) -> None:
    """Print a figure, and keep it for docs/benchmarks.md when bench/run.py runs this."""
    ratio = ours_ms / raw_ms
    verdict = "" if goal is None else f"  (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})"
    print(f"{name}: ours {ours_ms:.1f} ms, raw {raw_ms:.1f} ms, ratio {ratio:.2f}{verdict}", flush=True)
    goal_text, met = figures.ratio_goal(ratio, goal)
    figures.record(name, ours_ms, raw_ms, "ms", goal=goal_text, met=met)


def selective(ours_batches, raw_batches, isolated, repeat: int) -> None:
    """The selective filter on the laid-out files and on the files as generated, ours and raw DuckDB."""
    # One dataset per series: alternating two datasets would rebuild the connection's view at every query.
    ours, isolated_ms, raw_ms = medians_ms(
        lambda: ours_batches(SELECTIVE_SQL.format(t="cards_laid_out")),
        lambda: ours_batches(SELECTIVE_SQL.format(t="cards_laid_out"), isolated),
        lambda: raw_batches(SELECTIVE_SQL.format(t="raw_laid_out")),
        repeat=repeat,
    )
    ours_plain, raw_plain = medians_ms(
        lambda: ours_batches(SELECTIVE_SQL.format(t="cards_open")),
        lambda: raw_batches(SELECTIVE_SQL.format(t="raw_cards")),
        repeat=repeat,
    )
    report("selective filter, laid out", ours, raw_ms)
    report("selective filter, laid out, isolated", isolated_ms, raw_ms)
    report("selective filter, files as generated", ours_plain, raw_plain)
    report("selective filter: raw DuckDB on the laid-out files (raw: on the files as generated)", raw_ms, raw_plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data-dir", help="keep the generated Parquet here and reuse it (default: a temp dir)")
    parser.add_argument(
        "--row-group-rows", type=int, default=LAYOUT_ROW_GROUP_ROWS, help="row groups of the laid-out files"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-query-"))
    store = Path(args.data_dir) if args.data_dir else work / "store"
    data = store / f"card_transactions_{args.rows}"
    if not data.exists():
        data.mkdir(parents=True)
        start = time.perf_counter()
        generate(args.rows, data)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s", flush=True)
    files = sorted(str(p) for p in data.glob("*.parquet"))
    published = store / f"card_transactions_{args.rows}_published"
    if not published.exists():
        published.mkdir(parents=True)
        with_entity_bucket(files, published)
    published_files = sorted(str(p) for p in published.glob("*.parquet"))
    layout = store / f"card_transactions_{args.rows}_laid_out_{args.row_group_rows}"
    if not layout.exists():
        start = time.perf_counter()
        laid_out(files, layout, args.row_group_rows)
        print(
            f"laid out (sorted by {', '.join(LAYOUT_SORT_BY)}, row groups of {args.row_group_rows:,}) in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
    layout_files = sorted(str(p) for p in layout.glob("*.parquet"))
    size_bytes = sum(os.path.getsize(f) for f in files)
    print(f"{len(files)} files, {size_bytes / 1e6:.0f} MB; {THREADS} threads; median of {args.repeat}", flush=True)

    analysis = AnalysisSpec(
        aggregates=("count", "count_distinct", "sum", "avg"),
        dimensions=("province", "month", "category", "channel"),
        measures=("amount",),
        join_keys=(),
        min_entities=K,
    )
    open_binding = DatasetBinding("cards_open", 1, "open", files, COLUMNS, size_bytes=size_bytes)
    aggregate_binding = DatasetBinding(
        "cards", 1, "aggregate", published_files, COLUMNS, entity="buyer", analysis=analysis, size_bytes=size_bytes
    )
    legacy_binding = DatasetBinding(
        "cards_legacy", 1, "aggregate", files, COLUMNS, entity="buyer", analysis=analysis, size_bytes=size_bytes
    )
    layout_binding = DatasetBinding(
        "cards_laid_out", 1, "open", layout_files, COLUMNS, size_bytes=sum(os.path.getsize(f) for f in layout_files)
    )
    bindings = {
        "cards_open": open_binding,
        "cards": aggregate_binding,
        "cards_legacy": legacy_binding,
        "cards_laid_out": layout_binding,
    }
    config = SandboxConfig(
        store_root=str(store),
        temp_directory=str(work / "tmp"),
        memory_limit_bytes=MEMORY_LIMIT_BYTES,
        threads=THREADS,
        max_concurrent_queries=1,
    )
    gateway = Gateway(config)
    isolated = IsolatedGateway(config, workers=1)
    key = derive_partner_key(b"bench-master-key-0123456789", "bench")
    limits = Limits(max_query_seconds=600, max_result_rows=2_000_000)

    raw = duckdb.connect(config={"threads": THREADS, "memory_limit": f"{MEMORY_LIMIT_BYTES}B"})
    raw.execute("SET GLOBAL parquet_metadata_cache = true")
    raw.execute(f"CREATE VIEW raw_cards AS SELECT * FROM read_parquet({files!r})")
    raw.execute(f"CREATE VIEW raw_laid_out AS SELECT * FROM read_parquet({layout_files!r})")

    def ours_batches(sql: str, engine=gateway) -> int:
        return sum(batch.num_rows for batch in engine.run(sql, bindings, key, limits).record_batches())

    def raw_batches(sql: str) -> int:
        return sum(batch.num_rows for batch in raw.sql(sql).to_arrow_reader(BATCH_ROWS))

    def ours_stream(sql: str, format_name: str, engine=gateway) -> int:
        return sum(len(chunk) for chunk in formats.stream(engine.run(sql, bindings, key, limits), format_name))

    def raw_arrow_stream(sql: str) -> int:
        sink, size = _Sink(), 0
        reader = raw.sql(sql).to_arrow_reader(BATCH_ROWS)
        with ipc.new_stream(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                size += len(sink.take())
        return size + len(sink.take())

    r = args.repeat
    ours, isolated_ms, raw_ms = medians_ms(
        lambda: ours_batches(AGGREGATE_SQL.format(t="cards_open")),
        lambda: ours_batches(AGGREGATE_SQL.format(t="cards_open"), isolated),
        lambda: raw_batches(AGGREGATE_SQL.format(t="raw_cards")),
        repeat=r,
    )
    report("aggregate", ours, raw_ms, goal=1.15)
    report("aggregate, isolated", isolated_ms, raw_ms, goal=1.15)
    ours, legacy, raw_same, raw_plain = medians_ms(
        lambda: ours_batches(AGGREGATE_SQL.format(t="cards")),
        lambda: ours_batches(AGGREGATE_SQL.format(t="cards_legacy")),
        lambda: raw_batches(AGGREGATE_SQL.format(t="raw_cards") + K_HAVING),
        lambda: raw_batches(AGGREGATE_SQL.format(t="raw_cards")),
        repeat=r,
    )
    report("aggregate (k), raw without the k rule", ours, raw_plain, goal=2)
    report("aggregate (k), raw with HAVING count(DISTINCT buyer) >= k", ours, raw_same)
    report("aggregate (k) without a stored bucket, raw without the k rule", legacy, raw_plain)
    ours, isolated_ms, raw_ms = medians_ms(
        lambda: ours_stream(ARROW_SQL.format(t="cards_open"), "arrow"),
        lambda: ours_stream(ARROW_SQL.format(t="cards_open"), "arrow", isolated),
        lambda: raw_arrow_stream(ARROW_SQL.format(t="raw_cards")),
        repeat=r,
    )
    report("arrow 1M", ours, raw_ms, goal=1.3)
    report("arrow 1M, isolated", isolated_ms, raw_ms, goal=1.3)
    ours_json, raw_ms = medians_ms(
        lambda: ours_stream(ARROW_SQL.format(t="cards_open"), "json"),
        lambda: raw_arrow_stream(ARROW_SQL.format(t="raw_cards")),
        repeat=r,
    )
    report("json 1M (raw: arrow)", ours_json, raw_ms)
    ours, raw_ms = medians_ms(
        lambda: ours_stream(REKEYED_SQL.format(t="cards_open"), "arrow"),
        lambda: raw_arrow_stream(REKEYED_SQL.format(t="raw_cards")),
        repeat=r,
    )
    report("arrow 1M rekeyed (raw: not re-keyed)", ours, raw_ms)
    ours, isolated_ms, raw_ms = medians_ms(
        lambda: ours_batches(SMALL_SQL.format(t="cards_open")),
        lambda: ours_batches(SMALL_SQL.format(t="cards_open"), isolated),
        lambda: raw_batches(SMALL_SQL.format(t="raw_cards")),
        repeat=max(r, 21),
    )
    report("small query", ours, raw_ms)
    report("small query, isolated", isolated_ms, raw_ms)
    selective(ours_batches, raw_batches, isolated, repeat=max(r, 21))
    ours, raw_ms = medians_ms(
        lambda: raw_batches(AGGREGATE_SQL.format(t="raw_laid_out")),
        lambda: raw_batches(AGGREGATE_SQL.format(t="raw_cards")),
        repeat=r,
    )
    report("aggregate: raw DuckDB on the laid-out files (raw: on the files as generated)", ours, raw_ms)
    isolated.close()
    gateway.close()
    raw.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
