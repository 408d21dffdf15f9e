"""Throughput with two query nodes against one: the same client load on one gunicorn node, then spread over two.

    .venv/bin/python bench/bench_topology.py --rows 20000000
    .venv/bin/python bench/bench_topology.py --postgres-server postgres://postgres@127.0.0.1:5432/postgres

Generates card_transactions-like Parquet (bench_query_engine.generate) as version 1 of an open dataset
and registers a partner for it (bench_query_api.setup), then starts one query node: a gunicorn of its own
(`--node-workers` processes × `--node-threads` threads, each process with its own query worker pool),
as deploy/Procfile's `web` line runs one. CLIENT_THREADS (8) client threads send `--requests` queries of each
kind over keep-alive connections (bench/http_client.py), each request to the next node in turn
(round-robin, as the reverse proxy of deploy/nginx/vitamin.conf spreads them). A second node runs on the
same Parquet and the same database, and the same load is sent to the first node alone, then spread over
both, `--rounds` times in turn (medians reported).

- small:     the selective COUNT (the per-request overhead dominates: HTTP, token, grants, quota, audit)
- aggregate: SUM/COUNT by province and month (DuckDB's scan dominates)

Each prints queries/s, p50 and p99 for one node and two; the raw baseline of every figure is one node,
measured in the same run. Both nodes share this machine's cores: a second node adds processes, not
cores, so on a 2-core machine it can only add what one node left idle (docs/operations.md, "Sizing").
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import figures
from bench_query_api import (
    AGGREGATE_SQL,
    CLIENT_THREADS,
    QUERY_PATH,
    SLUG,
    _concurrently,
    free_port,
    on_database,
    server_environment,
    setup,
    start_server,
)
from bench_query_engine import SMALL_SQL, generate
from http_client import KeepAlive

KINDS = {"small": SMALL_SQL.format(t=SLUG), "aggregate": AGGREGATE_SQL.format(t=SLUG)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--requests", type=int, default=800, help="queries of each kind per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each, alternating one node and two")
    parser.add_argument("--node-workers", type=int, default=1, help="gunicorn processes per node")
    parser.add_argument("--node-threads", type=int, default=4, help="threads per gunicorn process")
    parser.add_argument(
        "--postgres-server",
        help="a PostgreSQL server on which a scratch database is made for the run and dropped (default: SQLite, "
        "which serializes the nodes' writes in one file: a deployment of several nodes uses PostgreSQL)",
    )
    args = parser.parse_args()
    on_database(args.postgres_server, lambda url: run(args, url))


def run(args: argparse.Namespace, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-topology-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    folder.mkdir(parents=True)
    started = time.perf_counter()
    files = generate(args.rows, folder)
    print(
        f"generated {args.rows:,} rows ({len(files)} files) in {time.perf_counter() - started:.1f} s; "
        f"{os.cpu_count()} CPUs; a node is {args.node_workers} x {args.node_threads} (gunicorn processes x threads); "
        f"{CLIENT_THREADS} clients; database {'PostgreSQL' if database_url else 'SQLite'}",
        flush=True,
    )
    env = server_environment(data_dir, database_url)
    env["VITAMIN_QUERY_POOL_SIZE"] = str(args.node_threads)  # no request waits for a query worker
    env["VITAMIN_QUERY_CONCURRENT_PER_INSTITUTION"] = str(4 * CLIENT_THREADS)  # one partner sends the whole load
    token = setup(env, folder)
    nodes: list[subprocess.Popen] = []
    try:
        bases = []
        for _ in range(2):
            port = free_port()
            nodes.append(start_server(env, port, args.node_workers, args.node_threads))
            bases.append(f"http://127.0.0.1:{port}")
        for kind, sql in KINDS.items():
            # One node and two in turn, round after round, so that the machine's drift hits both alike;
            # the second node idles (its memory held, no requests) while one node is measured.
            rounds = {1: [], 2: []}
            for _ in range(args.rounds):
                for count in (1, 2):
                    rounds[count].append(load(bases[:count], token, sql, args.requests))
            one, two = (tuple(statistics.median(r[i] for r in rounds[count]) for i in range(3)) for count in (1, 2))
            for count, (rate, p50, p99) in ((1, one), (2, two)):
                print(
                    f"{kind}, {count} node{'s' if count > 1 else ''}: {rate:.1f} queries/s, p50 {p50:.1f} ms, "
                    f"p99 {p99:.1f} ms (medians of {args.rounds} rounds)",
                    flush=True,
                )
            print(
                f"{kind}: two nodes / one: throughput {two[0] / one[0]:.2f}, p50 {two[1] / one[1]:.2f}, "
                f"p99 {two[2] / one[2]:.2f}",
                flush=True,
            )
            label = f"{kind} x{CLIENT_THREADS}"
            figures.record(f"{label}: throughput, two nodes (raw: one node)", two[0], one[0], "queries/s",
                           higher_is_better=True)  # fmt: skip
            figures.record(f"{label}: p50, two nodes (raw: one node)", two[1], one[1], "ms")
            figures.record(f"{label}: p99, two nodes (raw: one node)", two[2], one[2], "ms")
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def load(bases: list[str], token: str, sql: str, total: int) -> tuple[float, float, float]:
    """Queries per second, p50 and p99 ms of `total` queries from CLIENT_THREADS threads started together
    (bench_query_api._concurrently), each thread sending its requests to the nodes in turn, starting at a
    different node each."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"sql": sql, "format": "json"}
    clients = itertools.count()

    def make_client():
        connections = [KeepAlive(base, headers) for base in bases]
        for connection in connections:  # warm-up: the connection, each node's caches
            connection.post_json(QUERY_PATH, body, count_only=True)
        turns = itertools.count(next(clients))

        def one() -> None:
            status, _ = connections[next(turns) % len(connections)].post_json(QUERY_PATH, body, count_only=True)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")

        return one

    return _concurrently(make_client, total)


if __name__ == "__main__":
    main()
