"""A sampling profile of sequential small queries through the API: where a request's time goes.

    .venv/bin/python bench/profile_query_api.py --flamegraph docs/images/query-api-small-profile.svg
    .venv/bin/python bench/profile_query_api.py --database-url postgres://postgres@127.0.0.1:5432/vitamin_profile
    .venv/bin/python bench/profile_query_api.py --rows 20000000 --serving 2x4 1x8 4x2 8x1 --clients 8

Sets up the same server as bench/bench_query_api.py (one open dataset, one institution with a
subscription and a bearer token, a real gunicorn) and sends `--requests` small queries one after
another, alternating with the same query on raw in-process DuckDB. It prints the medians and the
per-request overhead (API minus raw). With --flamegraph the gunicorn process and its query worker
processes run under py-spy (`pip install py-spy`), which writes the flame graph as SVG; py-spy
slows what it samples a little, so take the figures from a run without it (or from `make bench`).

With --serving, each serving model (gunicorn WORKERSxTHREADS) is started in turn on the same data
and database, and with --clients each also takes bench_query_api's concurrent small-query test
(throughput, p50 and p99 against raw DuckDB with as many threads in this process): how the serving
model of docs/operations.md was chosen.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from bench_query_api import SLUG, free_port, server_environment, setup, small_concurrently, start_server
from bench_query_engine import SMALL_SQL, THREADS, generate
from http_client import KeepAlive


def profiled_server(env: dict[str, str], port: int, workers: int, threads: int, flamegraph: Path | None):
    """The benchmark's server, under py-spy when a flame graph is asked for."""
    wrapper = None
    if flamegraph is not None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        # A .txt output gets py-spy's collapsed stacks (one line per stack with its sample count) instead of SVG.
        kind = "raw" if flamegraph.suffix == ".txt" else "flamegraph"
        wrapper = [py_spy, "record", "--subprocesses", "--rate", "100", "--format", kind, "--output", str(flamegraph)]
        wrapper.append("--")
    return start_server(env, port, workers, threads, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--database-url", help="default: SQLite in the temporary data directory")
    parser.add_argument("--flamegraph", type=Path, help="write a py-spy flame graph (SVG) of the server here")
    parser.add_argument("--serving", nargs="*", default=[], help="gunicorn models to compare, e.g. 2x4 8x1")
    parser.add_argument("--clients", type=int, default=0, help="also run the concurrent test (8: bench_query_api's)")
    parser.add_argument("--query-threads", type=int, help=f"VITAMIN_QUERY_THREADS of the server (default {THREADS})")
    args = parser.parse_args()
    models = [tuple(int(n) for n in model.split("x")) for model in args.serving] or [(args.workers, args.threads)]

    work = Path(tempfile.mkdtemp(prefix="profile-query-api-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    folder.mkdir(parents=True)
    files = generate(args.rows, folder)
    env = server_environment(data_dir, args.database_url)
    if args.query_threads:
        env["VITAMIN_QUERY_THREADS"] = str(args.query_threads)
    token = setup(env, folder)
    flamegraph = args.flamegraph.resolve() if args.flamegraph else None
    raw = duckdb.connect(config={"threads": THREADS})
    raw.execute("SET GLOBAL parquet_metadata_cache = true")
    raw.execute(f"CREATE VIEW raw_cards AS SELECT * FROM read_parquet({files!r})")
    try:
        for workers, threads in models:
            port = free_port()
            server = profiled_server(env, port, workers, threads, flamegraph)
            try:
                print(f"gunicorn {workers} workers x {threads} threads", flush=True)
                measure(f"http://127.0.0.1:{port}", token, raw, args)
            finally:
                # SIGINT stops py-spy, which then writes the flame graph; gunicorn stops on it too.
                server.send_signal(signal.SIGINT if flamegraph else signal.SIGTERM)
                server.wait(timeout=60)
    finally:
        raw.close()
        shutil.rmtree(work, ignore_errors=True)
    if flamegraph:
        print(f"flame graph: {flamegraph}")


def measure(base_url: str, token: str, raw: duckdb.DuckDBPyConnection, args: argparse.Namespace) -> None:
    http = KeepAlive(base_url, {"Authorization": f"Bearer {token}"})
    body = {"sql": SMALL_SQL.format(t=SLUG), "format": "json"}
    raw_sql = SMALL_SQL.format(t="raw_cards")

    def api() -> None:
        status, content = http.post_json("/api/v1/query", body)
        if status != 200:
            raise SystemExit(f"{status}: {content[:500]!r}")

    for _ in range(20):  # warm-up: the query workers, connections, caches
        api()
        raw.sql(raw_sql).fetchall()
    ours, baseline = [], []
    for _ in range(args.requests):
        started = time.perf_counter()
        api()
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        raw.sql(raw_sql).fetchall()
        baseline.append(time.perf_counter() - started)
    ours_ms, raw_ms = statistics.median(ours) * 1000, statistics.median(baseline) * 1000
    print(
        f"small query, {args.requests} sequential: API {ours_ms:.2f} ms, raw {raw_ms:.2f} ms, "
        f"overhead {ours_ms - raw_ms:.2f} ms (medians)",
        flush=True,
    )
    if args.clients:
        small_concurrently(base_url, token, SMALL_SQL.format(t=SLUG), 50 * args.clients, raw)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
