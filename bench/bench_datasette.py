"""Vitamin's API against Datasette (SQLite) on the same rows, both over HTTP: the ratio is ours / Datasette.

    .venv/bin/python bench/bench_datasette.py --rows 20000000

Datasette is a dev dependency (requirements-dev.txt); when it is not installed this prints that the
comparison is skipped and exits 0. Generates card_transactions-like rows (bench_query_engine.generate),
serves them through a live gunicorn as version 1 of an open dataset whose files are laid out as
bench_query_engine.LAYOUT_SORT_BY and LAYOUT_ROW_GROUP_ROWS declare (bench_query_api's setup: every
request authenticated, granted, charged and audited), and loads the same rows into one SQLite table
served by a live `datasette serve` (immutable, JSON API, `sql_time_limit_ms` raised so that scans
finish). The two are timed alternately, as JSON, decoded by the client:

- selective filter: the ~120 rows of 20M of bench_query_engine.SELECTIVE_SQL, against Datasette
                    without an index, then with an index on the filter columns (month, province,
                    category); goal: at most 3x Datasette with the index
- small count:      bench_query_engine.SMALL_SQL, the same two ways
- aggregate:        SUM/COUNT by province, month (SQLite scans the whole table; fewer repeats)

Datasette returns at most `max_returned_rows` (1,000) rows per query, so bulk results (1M rows out)
are not compared here; bench_query_api measures them against raw DuckDB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import figures
import pyarrow.parquet as pq
import requests
from bench_query_api import AGGREGATE_SQL, SLUG, free_port, server_environment, setup, start_server
from bench_query_engine import SELECTIVE_SQL, SMALL_SQL, generate, laid_out, medians_ms
from http_client import KeepAlive

SELECTIVE_GOAL = 3  # ours / Datasette with an index
TABLE = "cards"
INDEX_COLUMNS = ("month", "province", "category")
SQL_TIME_LIMIT_MS = 600_000


def load_sqlite(files: list[str], path: Path) -> None:
    """The rows of the Parquet files as one SQLite table, inserted batch by batch."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute(
        f"CREATE TABLE {TABLE} (province TEXT, month TEXT, category TEXT, channel TEXT, buyer TEXT, amount REAL)"
    )
    for file in files:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=100_000):
            columns = [batch.column(name).to_pylist() for name in batch.schema.names]
            con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)", zip(*columns, strict=True))
    con.commit()
    con.close()


def start_datasette(path: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "datasette",
            "serve",
            "--immutable",
            str(path),
            "--port",
            str(port),
            "--setting",
            "sql_time_limit_ms",
            str(SQL_TIME_LIMIT_MS),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/-/versions.json", timeout=2).ok:
                return server
        except requests.RequestException:  # not listening yet
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("datasette did not start")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--aggregate-repeat", type=int, default=3, help="repeats of the aggregate (a SQLite scan)")
    args = parser.parse_args()
    if importlib.util.find_spec("datasette") is None:
        print("skipped: datasette is not installed (it is a dev dependency: pip install -r requirements-dev.txt)")
        return

    work = Path(tempfile.mkdtemp(prefix="bench-datasette-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    started = time.perf_counter()
    (work / "generated").mkdir(parents=True)
    generated = generate(args.rows, work / "generated")
    laid_out(generated, folder)
    database = work / f"{TABLE}.db"
    load_sqlite(generated, database)
    shutil.rmtree(work / "generated")
    print(
        f"{args.rows:,} rows generated, laid out and loaded into SQLite in {time.perf_counter() - started:.0f} s; "
        f"median of {args.repeat}",
        flush=True,
    )

    env = server_environment(data_dir, None)
    token = setup(env, folder)
    ours_port, datasette_port = free_port(), free_port()
    server = start_server(env, ours_port)
    datasette = None
    # The same lean client for both servers (bench/http_client.py).
    ours_http = KeepAlive(f"http://127.0.0.1:{ours_port}", {"Authorization": f"Bearer {token}"})
    datasette_http = KeepAlive(f"http://127.0.0.1:{datasette_port}")

    def ours(sql: str) -> int:
        status, body = ours_http.post_json("/api/v1/query", {"sql": sql, "format": "json"})
        if status != 200:
            raise SystemExit(f"ours: {status} {body[:300]!r}")
        return len(json.loads(body)["rows"])

    def theirs(sql: str) -> int:
        status, body = datasette_http.get(f"/{TABLE}.json", {"sql": sql, "_shape": "array"})
        if status != 200:
            raise SystemExit(f"datasette: {status} {body[:300]!r}")
        return len(json.loads(body))

    def compare(name: str, sql: str, repeat: int, goal: float | None = None) -> None:
        ours_ms, theirs_ms = medians_ms(
            lambda: ours(sql.format(t=SLUG)), lambda: theirs(sql.format(t=TABLE)), repeat=repeat
        )
        ratio = ours_ms / theirs_ms
        verdict = "" if goal is None else f"  (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})"
        print(f"{name}: ours {ours_ms:.1f} ms, datasette {theirs_ms:.1f} ms, ratio {ratio:.2f}{verdict}", flush=True)
        goal_text, met = figures.ratio_goal(ratio, goal)
        figures.record(name, ours_ms, theirs_ms, "ms", goal=goal_text, met=met)

    try:
        if ours(SELECTIVE_SQL.format(t=SLUG)) != len(
            sqlite3.connect(database).execute(SELECTIVE_SQL.format(t=TABLE)).fetchall()
        ):
            raise SystemExit("the two sides disagree on the selective filter's rows")
        datasette = start_datasette(database, datasette_port)
        compare("selective filter (raw: Datasette, no index)", SELECTIVE_SQL, args.repeat)
        compare("small count (raw: Datasette, no index)", SMALL_SQL, args.repeat)
        compare("aggregate (raw: Datasette)", AGGREGATE_SQL, args.aggregate_repeat)
        stop(datasette)
        started = time.perf_counter()
        with sqlite3.connect(database) as con:
            con.execute(f"CREATE INDEX {TABLE}_filter ON {TABLE} ({', '.join(INDEX_COLUMNS)})")
        print(f"index on ({', '.join(INDEX_COLUMNS)}) in {time.perf_counter() - started:.0f} s", flush=True)
        datasette = start_datasette(database, datasette_port)
        compare(
            "selective filter (raw: Datasette, index on the filter columns)",
            SELECTIVE_SQL,
            args.repeat,
            goal=SELECTIVE_GOAL,
        )
        compare("small count (raw: Datasette, index on the filter columns)", SMALL_SQL, args.repeat)
    finally:
        if datasette is not None:
            stop(datasette)
        stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
