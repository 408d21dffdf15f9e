"""A/B of the per-request overhead between two checkouts: the small query through each one's API, interleaved.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/ab_query_api.py /tmp/before . --rows 1000000 --requests 300

Each checkout gets its own data directory, database (SQLite, or with --postgres-server a scratch
database each on that server) and gunicorn (one process, four threads, as
bench/profile_query_api.py), on the same generated Parquet. The requests go A, B, then B, A, each
followed by the same query on raw in-process DuckDB, so that the machine's drift falls on both
alike; it prints each one's median and its overhead over raw's. Not part of `make bench`: a tool
for deciding whether a change to the request path pays (docs/query-internals.md, the seventh round).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
from bench_query_api import SLUG, free_port, scratch_database, server_environment, setup, start_server
from bench_query_engine import SMALL_SQL, THREADS, generate
from http_client import KeepAlive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs=2, type=Path, help="the two checkouts (A and B)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="per checkout")
    parser.add_argument("--postgres-server", help="e.g. postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    names = [f"{label} {path}" for label, path in zip("AB", args.checkouts, strict=True)]

    work = Path(tempfile.mkdtemp(prefix="ab-query-api-"))
    servers: list = []
    with contextlib.ExitStack() as databases:
        urls = [
            databases.enter_context(scratch_database(args.postgres_server)) if args.postgres_server else None
            for _ in names
        ]
        try:
            run(args, names, work, servers, urls)
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, names: list[str], work: Path, servers: list, urls: list[str | None]) -> None:
    source = work / "parquet"
    source.mkdir()
    files = generate(args.rows, source)
    clients = {}
    for name, checkout, url in zip(names, args.checkouts, urls, strict=True):
        data_dir = work / name[0] / "data"
        folder = data_dir / "store" / "datasets" / SLUG / "v1"
        folder.mkdir(parents=True)
        for file in files:
            os.link(file, folder / Path(file).name)
        env = server_environment(data_dir, url)
        root = checkout.resolve()
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "platform")])
        token = setup(env, folder, root)
        port = free_port()
        servers.append(start_server(env, port, 1, 4, root=root))
        clients[name] = KeepAlive(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"})
    raw = duckdb.connect(config={"threads": THREADS})
    raw.execute("SET GLOBAL parquet_metadata_cache = true")
    raw.execute(f"CREATE VIEW raw_cards AS SELECT * FROM read_parquet({files!r})")
    body = {"sql": SMALL_SQL.format(t=SLUG), "format": "json"}
    raw_sql = SMALL_SQL.format(t="raw_cards")

    def api(name: str) -> None:
        status, content = clients[name].post_json("/api/v1/query", body)
        if status != 200:
            raise SystemExit(f"{name}: {status}: {content[:500]!r}")

    for _ in range(30):  # warm-up: workers, connections, caches
        for name in names:
            api(name)
        raw.sql(raw_sql).fetchall()
    times: dict[str, list[float]] = {name: [] for name in [*names, "raw"]}
    for index in range(args.requests):
        for name in names if index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            api(name)
            times[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            raw.sql(raw_sql).fetchall()
            times["raw"].append(time.perf_counter() - started)
    raw_ms = statistics.median(times["raw"]) * 1000
    for name, values in times.items():
        ms = statistics.median(values) * 1000
        print(f"{name}: median {ms:.2f} ms, overhead {ms - raw_ms:.2f} ms", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
