"""POST /api/v1/query over HTTP against raw in-process DuckDB on the same Parquet files and the same SQL.

    .venv/bin/python bench/bench_query_api.py --rows 20000000

Generates card_transactions-like Parquet (bench_query_engine.generate) as version 1 of an
open dataset in a temporary VITAMIN_DATA_DIR, creates an institution, a client, a bearer
token and an approved subscription there (manage.py shell), starts a real multi-process
gunicorn on a free 127.0.0.1 port, and times requests over keep-alive connections of the
standard library's `http.client` (bench/http_client.py says why not `requests`): every API figure
includes authentication, the grant check, quota charging, the audit events and HTTP.

- aggregate:   SUM/COUNT by province, month over N rows (goal: ratio <= 1.15)
- arrow 1M:    a 1M-row result as an Arrow IPC stream, read to the end (goal: ratio <= 1.3)
- json 1M:     the same rows as JSON, against raw DuckDB's Arrow stream
- small:       the per-request overhead: a selective COUNT one request at a time, API median minus raw
               median (goal: <= 5 ms on SQLite, <= 8 ms on PostgreSQL: --database-url)
- small x8:    the same COUNT from 8 client threads at once: throughput and p50/p99 latency, against 8
               threads running it on raw DuckDB in process (goals: throughput >= 0.9x raw, p99 <= 2x p50)
- selective:   the selective filter of issue 15 (~120 rows of N), on a second dataset whose files are laid
               out as bench_query_engine.LAYOUT_* declare (goal: <= 15 ms through the API), and on the files as
               generated; raw DuckDB on both shows what the layout buys

Each line reads `name: ours X ms, raw Y ms, ratio Z`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb
import figures
import pyarrow.ipc as ipc
import requests
from bench_query_engine import (
    ARROW_SQL,
    BATCH_ROWS,
    LAYOUT_ROW_GROUP_ROWS,
    LAYOUT_SORT_BY,
    SELECTIVE_SQL,
    SMALL_SQL,
    THREADS,
    _Sink,
    generate,
    laid_out,
    medians_ms,
    report,
)
from http_client import KeepAlive

REPO = Path(__file__).resolve().parents[1]
QUERY_PATH = "/api/v1/query"
SLUG = "bench_cards"
AGGREGATE_SQL = "SELECT province, month, sum(amount) AS amount, count(*) AS n FROM {t} GROUP BY province, month"
MEMORY_LIMIT_MB = 4096
WEB_WORKERS = 2  # VITAMIN_WEB_WORKERS' default
WEB_THREADS = 4  # VITAMIN_WEB_THREADS' default
CLIENT_THREADS = 8
# Per-request overhead (API median minus raw median, one small query at a time), by database (issue 15).
OVERHEAD_GOAL_MS = {"SQLite": 5.0, "PostgreSQL": 8.0}
X8_THROUGHPUT_GOAL = 0.9  # ours / raw, 8 clients against 8 threads in one process
X8_P99_GOAL = 2.0  # our p99 / our p50
SELECTIVE_GOAL_MS = 15

SETUP = textwrap.dedent(
    """
    import json, secrets
    from datetime import timedelta
    from pathlib import Path
    from django.utils import timezone
    from catalog.models import Dataset, DatasetVersion
    from datasets.spec import ColumnSpec, DatasetSpec, SourceSpec, Tier
    from access import subscriptions
    from access.models import QuotaPlan
    from institutions import lifecycle
    from institutions.credit_code import check_character
    from institutions.models import InstitutionStatus, InstitutionType
    from oauth.clients import create_client
    from oauth.credentials import hash_secret
    from oauth.models import GrantType, Token

    files = sorted(Path(FOLDER).glob("*.parquet"))
    roles = {"province": "dimension", "month": "dimension", "category": "dimension", "channel": "dimension",
             "buyer": "entity", "amount": "measure"}
    # Built directly, not parsed: an open dataset with an entity column is what a spec file may not
    # declare, but the engine's re-keying path is what this benchmark measures.
    spec = DatasetSpec(
        slug=SLUG, title="Bench cards", description="", publisher="", contact="", license="", keywords=(),
        theme="bench", tier=Tier.OPEN, update_frequency="daily", schedule="", time_zone="Asia/Shanghai",
        source=SourceSpec("parquet", {}), transform=None,
        columns=tuple(ColumnSpec(n, n, r, "", "string") for n, r in roles.items()), privacy=None,
        partitioning=(), sort_by=(), versions_kept=3, analysis=None, lookup=None, fingerprint="bench",
    )
    dataset = Dataset.objects.create(slug=SLUG, title="Bench cards", tier="open", spec=spec.to_document(),
                                     spec_hash=spec.fingerprint)
    DatasetVersion.objects.create(spec=spec.to_document(), spec_fingerprint=spec.fingerprint,
        dataset=dataset, number=1, location=f"datasets/{SLUG}/v1",
        files=[{"path": f.name, "size_bytes": f.stat().st_size} for f in files],
        bytes=sum(f.stat().st_size for f in files), schema=[{"name": n} for n in roles],
        schema_hash="bench", content_hash="bench", pseudonym_release="r1")
    base = "91330100000000001"
    institution = lifecycle.file_application(applicant=None, legal_name="Bench Fund", type=InstitutionType.FUND_COMPANY,
        credit_code=base + check_character(base), contact_name="Bench", contact_email="bench@example.com")
    lifecycle.change_status(institution, InstitutionStatus.APPROVED, reason="Benchmark.")
    plan = QuotaPlan.objects.create(name="bench", queries_per_day=10**9, rows_returned_per_day=10**15,
        bytes_scanned_per_day=10**18, bytes_downloaded_per_day=10**18, lookups_per_day=10**6,
        concurrent_queries=64, max_query_seconds=600, max_result_rows=2_000_000)
    subscription = subscriptions.request_access(institution, dataset, modes=["query"], purpose="Benchmark.", plan=plan)
    subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    client, _ = create_client(institution, name="bench", scope="query", grant_types=[GrantType.CLIENT_CREDENTIALS])
    token = secrets.token_urlsafe(32)
    Token.objects.create(client=client, grant_type=GrantType.CLIENT_CREDENTIALS, scope="query",
        access_token_hash=hash_secret(token), access_expires_at=timezone.now() + timedelta(hours=12))
    print("TOKEN=" + token)
    """
)


# A second version-1 dataset for the selective figure: the same rows, laid out as LAYOUT_SORT_BY and
# LAYOUT_ROW_GROUP_ROWS declare, subscribed to by the institution SETUP made.
SETUP_LAID_OUT = textwrap.dedent(
    """
    from dataclasses import replace
    from datetime import timedelta
    from pathlib import Path
    from django.utils import timezone
    from catalog.models import Dataset, DatasetVersion
    from datasets.spec import DatasetSpec
    from access import subscriptions
    from access.models import QuotaPlan
    from institutions.models import Institution

    files = sorted(Path(FOLDER).glob("*.parquet"))
    source = Dataset.objects.get(slug=SOURCE_SLUG)
    spec = replace(DatasetSpec.from_document(source.spec), slug=SLUG, sort_by=SORT_BY, row_group_rows=ROW_GROUP_ROWS)
    dataset = Dataset.objects.create(slug=SLUG, title="Bench cards, laid out", tier="open", spec=spec.to_document(),
                                     spec_hash=spec.fingerprint)
    version = source.versions.get(number=1)
    DatasetVersion.objects.create(spec=spec.to_document(), spec_fingerprint=spec.fingerprint,
        dataset=dataset, number=1, location=f"datasets/{SLUG}/v1",
        files=[{"path": f.name, "size_bytes": f.stat().st_size} for f in files],
        bytes=sum(f.stat().st_size for f in files), schema=version.schema,
        schema_hash="bench", content_hash="bench", pseudonym_release="r1")
    institution = Institution.objects.get(legal_name="Bench Fund")
    plan = QuotaPlan.objects.get(name="bench")
    subscription = subscriptions.request_access(institution, dataset, modes=["query"], purpose="Benchmark.", plan=plan)
    subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "platform")])
    env["DJANGO_SETTINGS_MODULE"] = "vitamin.settings"
    env["VITAMIN_DATA_DIR"] = str(data_dir)
    env["VITAMIN_QUERY_THREADS"] = str(THREADS)
    env["VITAMIN_QUERY_MEMORY_LIMIT_MB"] = str(MEMORY_LIMIT_MB)
    env["VITAMIN_LOG_LEVEL"] = "WARNING"
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def setup(env: dict[str, str], folder: Path, root: Path = REPO) -> str:
    """Migrate, and load the benchmark's partner and dataset, with the code of checkout `root`."""
    manage = [sys.executable, str(root / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=root)  # noqa: S603
    script = f"FOLDER = {str(folder)!r}\nSLUG = {SLUG!r}\n" + SETUP
    output = subprocess.run(  # noqa: S603
        [*manage, "shell", "-c", script], env=env, check=True, capture_output=True, text=True, cwd=root
    ).stdout
    return next(line[len("TOKEN=") :] for line in output.splitlines() if line.startswith("TOKEN="))


def start_server(
    env: dict[str, str],
    port: int,
    workers: int = WEB_WORKERS,
    threads: int = WEB_THREADS,
    wrapper: list[str] | None = None,
    root: Path = REPO,
) -> subprocess.Popen:
    """gunicorn serving the API on `port`, once it answers; `wrapper` runs it under another command (a profiler).
    It runs in checkout `root` (`python -m` puts the working directory first on the module path)."""
    server = subprocess.Popen(  # noqa: S603
        [
            *(wrapper or []),
            sys.executable,
            "-m",
            "gunicorn",
            "vitamin.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "600",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=root,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                return server
        except requests.RequestException:  # not listening yet, or a worker still importing
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--small-requests", type=int, default=400, help="small queries in the concurrent test")
    # The serving model `make run` uses, from the same variables (VITAMIN_QUERY_POOL_SIZE reaches the
    # server from the environment as it is; DuckDB's threads are THREADS on both sides).
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("VITAMIN_WEB_WORKERS", WEB_WORKERS)))
    parser.add_argument("--web-threads", type=int, default=int(os.environ.get("VITAMIN_WEB_THREADS", WEB_THREADS)))
    parser.add_argument(
        "--database-url", help="e.g. postgres://postgres@127.0.0.1:5432/vitamin_bench (default: SQLite)"
    )
    parser.add_argument(
        "--postgres-server",
        help="a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres) on which a scratch database "
        "is created for the run and dropped after; the run is skipped with a message when it cannot be reached",
    )
    parser.add_argument("--only-overhead", action="store_true", help="only the small query, one at a time")
    args = parser.parse_args()

    def run_on(database_url: str | None) -> None:
        args.database_url = database_url or args.database_url
        run(args)

    on_database(args.postgres_server, run_on)


def on_database(postgres_server: str | None, run: Callable[[str | None], None]) -> None:
    """`run(database_url)`: on a scratch database of `postgres_server` (skipped with a message when it does not
    answer), or with None (SQLite) when no server is given."""
    if not postgres_server:
        run(None)
        return
    with scratch_database(postgres_server) as url:
        if url is not None:
            run(url)


_SCRATCH_NUMBERS = itertools.count()


@contextlib.contextmanager
def scratch_database(server_url: str):
    """A new database on `server_url`'s server for the run (its URL), dropped after; None if unreachable."""
    import psycopg

    name = f"vitamin_bench_{os.getpid()}_{next(_SCRATCH_NUMBERS)}"
    try:
        admin = psycopg.connect(server_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"skipped: PostgreSQL at {server_url} is not reachable ({str(exc).strip()[:200]})", flush=True)
        yield None
        return
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(args: argparse.Namespace) -> None:

    work = Path(tempfile.mkdtemp(prefix="bench-query-api-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    folder.mkdir(parents=True)
    start = time.perf_counter()
    files = generate(args.rows, folder)
    size_bytes = sum(os.path.getsize(f) for f in files)
    print(
        f"generated {args.rows:,} rows ({len(files)} files, {size_bytes / 1e6:.0f} MB) in "
        f"{time.perf_counter() - start:.1f} s; {THREADS} threads; median of {args.repeat}",
        flush=True,
    )

    env = server_environment(data_dir, args.database_url)
    token = setup(env, folder)
    port = free_port()
    server = start_server(env, port, args.web_workers, args.web_threads)
    base_url = f"http://127.0.0.1:{port}"
    http = KeepAlive(base_url, {"Authorization": f"Bearer {token}"})

    raw = duckdb.connect(config={"threads": THREADS, "memory_limit": f"{MEMORY_LIMIT_MB}MB"})
    raw.execute("SET GLOBAL parquet_metadata_cache = true")
    raw.execute(f"CREATE VIEW raw_cards AS SELECT * FROM read_parquet({files!r})")

    def api(sql: str, fmt: str) -> int:
        status, size = http.post_json(QUERY_PATH, {"sql": sql, "format": fmt}, count_only=True)
        if status != 200:
            raise SystemExit(f"{status}: {http.post_json(QUERY_PATH, {'sql': sql, 'format': fmt})[1][:500]!r}")
        return size

    def raw_batches(sql: str) -> int:
        return sum(batch.num_rows for batch in raw.sql(sql).to_arrow_reader(BATCH_ROWS))

    def raw_arrow_stream(sql: str) -> int:
        sink, size = _Sink(), 0
        reader = raw.sql(sql).to_arrow_reader(BATCH_ROWS)
        with ipc.new_stream(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                size += len(sink.take())
        return size + len(sink.take())

    try:
        r = args.repeat
        if args.only_overhead:
            small_sequentially(api, raw_batches, SMALL_SQL, max(r, 41), database_label(args.database_url))
            return
        # Both gunicorn workers get warmed by the warm-up calls medians_ms makes (and the repeats).
        ours, raw_ms = medians_ms(
            lambda: api(AGGREGATE_SQL.format(t=SLUG), "json"),
            lambda: raw_batches(AGGREGATE_SQL.format(t="raw_cards")),
            repeat=r,
        )
        report("aggregate", ours, raw_ms, goal=1.15)
        rows_sql = ARROW_SQL.replace("LIMIT 1000000", f"LIMIT {min(1_000_000, args.rows)}")
        ours, raw_ms = medians_ms(
            lambda: api(rows_sql.format(t=SLUG), "arrow"),
            lambda: raw_arrow_stream(rows_sql.format(t="raw_cards")),
            repeat=r,
        )
        report("arrow 1M", ours, raw_ms, goal=1.3)
        ours, raw_ms = medians_ms(
            lambda: api(rows_sql.format(t=SLUG), "json"),
            lambda: raw_arrow_stream(rows_sql.format(t="raw_cards")),
            repeat=r,
        )
        report("json 1M (raw: arrow)", ours, raw_ms)
        small_sequentially(api, raw_batches, SMALL_SQL, max(r, 41), database_label(args.database_url))
        small_concurrently(base_url, token, SMALL_SQL.format(t=SLUG), args.small_requests, raw)
        selective(env, data_dir, files, api, raw_batches, r)
    finally:
        server.terminate()
        server.wait(timeout=30)
        raw.close()
        shutil.rmtree(work, ignore_errors=True)


def selective(env: dict[str, str], data_dir: Path, files: list[str], api, raw_batches, repeat: int) -> None:
    """The selective filter through the API and raw DuckDB, on laid-out files and on the files as generated.

    The laid-out files are version 1 of a second dataset (SETUP_LAID_OUT). The goal is absolute, the
    issue's: at most 15 ms through the API, within 3x of Datasette (SQLite) with an index on the
    filter columns (bench_datasette.py measures that ratio).
    """
    slug = f"{SLUG}_laid_out"
    folder = data_dir / "store" / "datasets" / slug / "v1"
    start = time.perf_counter()
    layout_files = laid_out(files, folder)
    print(f"laid out for the selective filter in {time.perf_counter() - start:.1f} s", flush=True)
    script = (
        f"FOLDER = {str(folder)!r}\nSLUG = {slug!r}\nSOURCE_SLUG = {SLUG!r}\n"
        f"SORT_BY = {LAYOUT_SORT_BY!r}\nROW_GROUP_ROWS = {LAYOUT_ROW_GROUP_ROWS!r}\n" + SETUP_LAID_OUT
    )
    manage = [sys.executable, str(REPO / "manage.py"), "shell", "-c", script]
    done = subprocess.run(manage, env=env, capture_output=True, text=True)  # noqa: S603 (it prints the notice e-mail)
    if done.returncode:
        raise SystemExit(f"registering {slug} failed:\n{done.stderr[-3000:]}")
    raw = duckdb.connect(config={"threads": THREADS, "memory_limit": f"{MEMORY_LIMIT_MB}MB"})
    raw.execute("SET GLOBAL parquet_metadata_cache = true")
    raw.execute(f"CREATE VIEW raw_laid_out AS SELECT * FROM read_parquet({layout_files!r})")
    # One dataset per series: alternating two datasets would rebuild the connection's view at every query.
    ours, raw_ms = medians_ms(
        lambda: api(SELECTIVE_SQL.format(t=slug), "json"),
        lambda: sum(batch.num_rows for batch in raw.sql(SELECTIVE_SQL.format(t="raw_laid_out")).to_arrow_reader()),
        repeat=max(repeat, 21),
    )
    ours_plain, raw_plain = medians_ms(
        lambda: api(SELECTIVE_SQL.format(t=SLUG), "json"),
        lambda: raw_batches(SELECTIVE_SQL.format(t="raw_cards")),
        repeat=max(repeat, 21),
    )
    raw.close()
    met = ours <= SELECTIVE_GOAL_MS
    print(
        f"selective filter, laid out: ours {ours:.1f} ms, raw {raw_ms:.1f} ms, ratio {ours / raw_ms:.2f}"
        f"  (goal <= {SELECTIVE_GOAL_MS} ms: {'met' if met else 'NOT met'}); overhead {ours - raw_ms:.1f} ms",
        flush=True,
    )
    figures.record("selective filter, laid out", ours, raw_ms, "ms", goal=f"≤ {SELECTIVE_GOAL_MS} ms", met=met)
    report("selective filter, files as generated", ours_plain, raw_plain)
    report("selective filter: raw DuckDB on the laid-out files (raw: on the files as generated)", raw_ms, raw_plain)


def database_label(database_url: str | None) -> str:
    return "PostgreSQL" if database_url and database_url.startswith(("postgres", "pgsql")) else "SQLite"


def small_sequentially(api, raw_batches, sql: str, repeat: int, database: str) -> None:
    """The per-request overhead: the small query one request at a time through the API, and on raw DuckDB.

    Both run the same SQL on the same files, so the difference of the medians is what a request
    adds to DuckDB's own work: HTTP, the token, the grant and version lookups, the two transactions
    with their audit events and quota writes, the round trip to a query worker process.
    """
    ours, raw_ms = medians_ms(
        lambda: api(sql.format(t=SLUG), "json"), lambda: raw_batches(sql.format(t="raw_cards")), repeat=repeat
    )
    overhead, goal = ours - raw_ms, OVERHEAD_GOAL_MS[database]
    met = overhead <= goal
    print(
        f"small query ({database}): ours {ours:.1f} ms, raw {raw_ms:.1f} ms, ratio {ours / raw_ms:.2f}; "
        f"per-request overhead {overhead:.1f} ms (goal <= {goal:g} ms: {'met' if met else 'NOT met'})",
        flush=True,
    )
    figures.record(
        f"small query, one at a time, {database}: per-request overhead ours − raw = {overhead:.1f} ms",
        ours,
        raw_ms,
        "ms",
        goal=f"ours − raw ≤ {goal:g} ms",
        met=met,
    )


def small_concurrently(base_url: str, token: str, sql: str, total: int, raw: duckdb.DuckDBPyConnection) -> None:
    """`total` small queries from CLIENT_THREADS threads at once: through the API, then raw DuckDB in process.

    The raw side runs the same number of threads, each with its own cursor on one DuckDB database,
    so both sides share the two cores the same way; comparing against one query alone would count
    the queueing that any server has under 8 concurrent clients as our overhead.
    """

    def api_client():
        http = KeepAlive(base_url, {"Authorization": f"Bearer {token}"})

        def one() -> None:
            status, body = http.post_json(QUERY_PATH, {"sql": sql, "format": "json"})
            if status != 200:
                raise RuntimeError(f"{status} {body[:200]!r}")
            json.loads(body)

        return one

    def raw_client():
        cursor = raw.cursor()
        raw_sql = sql.replace(SLUG, "raw_cards")
        return lambda: cursor.sql(raw_sql).fetchall()

    ours = _concurrently(api_client, total)
    baseline = _concurrently(raw_client, total)
    for name, (rate, p50, p99) in (("ours", ours), ("raw", baseline)):
        print(f"small x{CLIENT_THREADS} {name}: {rate:.0f} queries/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
    throughput, spread = ours[0] / baseline[0], ours[2] / ours[1]
    print(
        f"small x{CLIENT_THREADS} throughput: ours/raw {throughput:.2f} (goal >= {X8_THROUGHPUT_GOAL}: "
        f"{'met' if throughput >= X8_THROUGHPUT_GOAL else 'NOT met'}); our p99/p50 {spread:.2f} "
        f"(goal <= {X8_P99_GOAL}: {'met' if spread <= X8_P99_GOAL else 'NOT met'})",
        flush=True,
    )
    figures.record(
        f"small x{CLIENT_THREADS} throughput (raw: {CLIENT_THREADS} threads in process)",
        ours[0],
        baseline[0],
        "queries/s",
        goal=f"≥ {X8_THROUGHPUT_GOAL}",
        met=throughput >= X8_THROUGHPUT_GOAL,
        higher_is_better=True,
    )
    report(f"small x{CLIENT_THREADS} p50 (raw: {CLIENT_THREADS} threads in process)", ours[1], baseline[1])
    report(f"small x{CLIENT_THREADS} p99 (raw: {CLIENT_THREADS} threads in process)", ours[2], baseline[2])
    figures.record(
        f"small x{CLIENT_THREADS} p99 (raw: our p50)",
        ours[2],
        ours[1],
        "ms",
        goal=f"≤ {X8_P99_GOAL}",
        met=spread <= X8_P99_GOAL,
    )
    # The same spread of raw DuckDB itself under the same 8 clients: how much of ours the machine makes.
    figures.record(f"small x{CLIENT_THREADS} raw DuckDB's own p99 (raw: its p50)", baseline[2], baseline[1], "ms")


def _concurrently(make_client, total: int) -> tuple[float, float, float]:
    """Queries per second, p50 and p99 ms of `total` calls spread over CLIENT_THREADS threads started together."""
    latencies_ms: list[float] = []
    lock = threading.Lock()
    start_together = threading.Barrier(CLIENT_THREADS + 1)
    errors: list[BaseException] = []

    def client() -> None:
        one = make_client()
        one()  # warm-up: connection, caches
        start_together.wait()
        try:
            for _ in range(total // CLIENT_THREADS):
                started = time.perf_counter()
                one()
                with lock:
                    latencies_ms.append((time.perf_counter() - started) * 1000)
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    start_together.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} small-query clients failed, e.g. {errors[0]}")
    latencies_ms.sort()
    p99 = latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))]
    return len(latencies_ms) / seconds, statistics.median(latencies_ms), p99


if __name__ == "__main__":
    main()
