"""Load: many partners at once, a realistic mix of requests, at increasing concurrency, and memory over a long run.

    .venv/bin/python bench/bench_load.py --rows 2000000 --partners 50
    .venv/bin/python bench/bench_load.py --postgres-server postgres://postgres@127.0.0.1:5432/postgres

Generates card_transactions-like Parquet (bench_query_engine.generate) as version 1 of an open dataset in
a temporary VITAMIN_DATA_DIR, registers `--partners` institutions subscribed to it, each with its own
client and token (tests/live_partners.py, which the fault tests use too), and starts what `make run`
starts: gunicorn (VITAMIN_WEB_WORKERS × VITAMIN_WEB_THREADS) and a Celery worker for the jobs. Then
client threads, each a partner of its own on a keep-alive connection (bench/http_client.py), send a mix
of requests picked by weight:

- small:    a selective COUNT as JSON (the dashboard's request)
- aggregate: SUM/COUNT by province and month as JSON
- arrow:    a large export, up to 1M rows as an Arrow IPC stream, read to the end
- job:      the aggregate as a query job: submitted, polled until done, its Parquet result downloaded
- catalog:  the catalog browsed: the dataset list, one dataset, its schema

at each concurrency of `--steps` for `--step-seconds`, printing per kind the count, errors, p50 and p99.
Then a soak at the highest concurrency for `--soak-seconds`, sampling every second the resident memory
(VmRSS) of every server process, and printing per process the first sample after warm-up, the peak and
the last: what grows shows as last/first. The raw baseline of the latencies is the small query on raw
in-process DuckDB over the same files, one at a time; of the memory, each process's own first sample.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb
import figures
from bench_query_api import WEB_THREADS, WEB_WORKERS, on_database
from bench_query_engine import AGGREGATE_SQL, ARROW_SQL, COLUMNS, SMALL_SQL, THREADS, generate, medians_ms
from http_client import KeepAlive

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from live_partners import seed_partners, start_gunicorn, web_environment  # noqa: E402 - the path above

SLUG = "load_cards"
# name → weight: what a day of partners looks like (catalog pages and small queries most, exports rare)
MIX = {"small": 40, "aggregate": 20, "catalog": 30, "arrow": 5, "job": 5}
JOB_POLL_SECONDS = 0.2
JOB_TIMEOUT_SECONDS = 300
WARM_UP_SECONDS = 10  # the soak's memory baseline is taken after this: caches filled, pools opened


@dataclass
class Sample:
    kind: str
    ms: float
    ok: bool


class Mix:
    """Request kinds picked by weight, each sent as a partner would and timed end to end."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)
        self.kinds = list(MIX)
        self.cumulative = list(itertools.accumulate(MIX.values()))

    def pick(self) -> str:
        return self.kinds[bisect.bisect(self.cumulative, self.random.random() * self.cumulative[-1])]


def send(http: KeepAlive, kind: str) -> bool:
    """One request of `kind` (a job: submitted, polled and downloaded); whether every part answered as it should."""
    table = SLUG
    if kind in ("small", "aggregate", "arrow"):
        sql = {"small": SMALL_SQL, "aggregate": AGGREGATE_SQL, "arrow": ARROW_SQL}[kind].format(t=table)
        status, _ = http.post_json("/api/v1/query", {"sql": sql, "format": "arrow" if kind == "arrow" else "json"},
                                   count_only=True)  # fmt: skip
        return status == 200
    if kind == "catalog":
        return all(
            http.request("GET", path, count_only=True)[0] == 200
            for path in ("/api/v1/datasets", f"/api/v1/datasets/{table}", f"/api/v1/datasets/{table}/schema")
        )
    status, body = http.post_json("/api/v1/jobs", {"sql": AGGREGATE_SQL.format(t=table), "format": "parquet"})
    if status != 202:
        return False
    job = json.loads(body)
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(JOB_POLL_SECONDS)
        status, body = http.get(job["links"]["self"])
        if status != 200:
            return False
        job = json.loads(body)
    return job["state"] == "succeeded" and http.request("GET", job["links"]["result"], count_only=True)[0] == 200


def run_clients(base: str, tokens: list[str], clients: int, seconds: float, on_second=None) -> list[Sample]:
    """`clients` threads, each a partner of its own, sending the mix for `seconds`; every request's sample."""
    samples: list[Sample] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        http = KeepAlive(base, {"Authorization": f"Bearer {tokens[index % len(tokens)]}"}, timeout=JOB_TIMEOUT_SECONDS)
        mix, mine = Mix(seed=index), []
        while time.monotonic() < stop:
            kind = mix.pick()
            started = time.perf_counter()
            try:
                ok = send(http, kind)
            except (OSError, ValueError, KeyError):  # a dropped connection, a body that is not what it should be
                ok = False
                http.close()
            mine.append(Sample(kind, (time.perf_counter() - started) * 1000, ok))
        http.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if on_second is not None:
            on_second()
        time.sleep(1)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report_step(label: str, samples: list[Sample], seconds: float, raw_small_ms: float) -> None:
    by_kind = defaultdict(list)
    for sample in samples:
        by_kind[sample.kind].append(sample)
    errors = sum(not s.ok for s in samples)
    print(f"{label}: {len(samples) / seconds:.1f} requests/s, {errors} errors", flush=True)
    for kind in MIX:
        mine = by_kind.get(kind, [])
        if not mine:
            continue
        ms = [s.ms for s in mine if s.ok] or [float("nan")]
        failed = sum(not s.ok for s in mine)
        print(f"  {kind:<9} n={len(mine):<5} errors={failed:<3} p50 {percentile(ms, 0.5):8.1f} ms   "
              f"p99 {percentile(ms, 0.99):8.1f} ms", flush=True)  # fmt: skip
        if kind == "small":
            figures.record(f"small query p50, {label}", percentile(ms, 0.5), raw_small_ms, "ms")
            figures.record(f"small query p99, {label}", percentile(ms, 0.99), raw_small_ms, "ms")
    figures.record(f"requests/s, {label}", len(samples) / seconds, None, "requests/s", higher_is_better=True)
    figures.record(f"errors, {label}", errors, None, "errors", goal="0", met=errors == 0)


def server_processes(data_dir: Path) -> dict[int, str]:
    """pid → a short name of every process started with this data directory in its environment."""
    marker = f"VITAMIN_DATA_DIR={data_dir}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = _role((proc / "cmdline").read_bytes().decode(errors="replace"))
        except OSError:
            continue
    return found


def _role(command_line: str) -> str:
    for marker, role in (("gunicorn", "web"), ("celery", "celery worker"), ("datasets", "query sandbox")):
        if marker in command_line:
            return role
    return command_line.replace("\0", " ")[:40]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class MemoryWatch:
    """Every server process's VmRSS, sampled once a second after the warm-up."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.started = time.monotonic()
        self.samples: dict[int, list[float]] = defaultdict(list)
        self.names: dict[int, str] = {}

    def sample(self) -> None:
        if time.monotonic() - self.started < WARM_UP_SECONDS:
            return
        for pid, name in server_processes(self.data_dir).items():
            rss = rss_mb(pid)
            if rss is not None:
                self.names[pid] = name
                self.samples[pid].append(rss)

    def report(self) -> None:
        """Per process: first sample, peak, last. The long-lived ones (web, Celery) must stay flat; a query
        sandbox grows and shrinks with the query it runs (DuckDB's memory limit caps it)."""
        print("memory per process (VmRSS, MB): first after warm-up, peak, last", flush=True)
        growth_by_role: dict[str, tuple[float, float, float]] = {}
        for pid, values in sorted(self.samples.items()):
            if len(values) < 2:
                continue
            role, growth = self.names[pid], values[-1] / values[0]
            print(f"  {pid:>7} {role:<14} {values[0]:7.1f} {max(values):7.1f} {values[-1]:7.1f} "
                  f"({growth:.2f}x, {len(values)} samples)", flush=True)  # fmt: skip
            if values[0] > 100 and growth > growth_by_role.get(role, (0.0,))[0]:  # not the masters (~25 MB)
                growth_by_role[role] = (growth, values[0], values[-1])
        for role in ("web", "celery worker"):
            if role in growth_by_role:
                _, first, last = growth_by_role[role]
                figures.record(f"memory of the {role} process that grew most, last vs first", last, first, "MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--steps", default="1,4,8,16", help="client threads of each step, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=30)
    parser.add_argument("--soak-seconds", type=float, default=300, help="the long run at the highest step")
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("VITAMIN_WEB_WORKERS", WEB_WORKERS)))
    parser.add_argument("--web-threads", type=int, default=int(os.environ.get("VITAMIN_WEB_THREADS", WEB_THREADS)))
    parser.add_argument(
        "--postgres-server", help="run on a scratch database of this PostgreSQL server (default: SQLite)"
    )
    args = parser.parse_args()
    on_database(args.postgres_server, lambda url: run(args, url))


def run(args: argparse.Namespace, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    folder.mkdir(parents=True)
    files = generate(args.rows, folder)
    env = web_environment(data_dir, VITAMIN_QUERY_THREADS=str(THREADS), VITAMIN_WEB_WORKERS=str(args.web_workers))
    if database_url:
        env["DATABASE_URL"] = database_url
    tokens = [partner["token"] for partner in seed_partners(env, SLUG, COLUMNS, args.partners)]
    steps = [int(step) for step in args.steps.split(",")]
    print(f"{args.rows:,} rows, {args.partners} partners, {args.web_workers} web workers x {args.web_threads} threads, "
          f"{'PostgreSQL' if database_url else 'SQLite'}; mix {MIX}", flush=True)  # fmt: skip

    raw = duckdb.connect(config={"threads": THREADS})
    raw.execute(f"CREATE VIEW raw_cards AS SELECT * FROM read_parquet({files!r})")
    (raw_small_ms,) = medians_ms(lambda: raw.sql(SMALL_SQL.format(t="raw_cards")).fetchall(), repeat=21)
    print(f"raw DuckDB, small query one at a time: {raw_small_ms:.2f} ms", flush=True)

    with (work / "worker.log").open("ab") as worker_log:
        worker = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "celery", "-A", "vitamin", "worker", "--concurrency", "2", "--loglevel", "WARNING"],
            env=env, cwd=REPO, stdout=worker_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with start_gunicorn(env, log=work / "web.log", workers=args.web_workers, threads=args.web_threads) as base:
            run_clients(base, tokens, max(steps), WARM_UP_SECONDS)  # imports, connections, caches: not measured
            for clients in steps:
                started = time.monotonic()
                samples = run_clients(base, tokens, clients, args.step_seconds)
                report_step(f"{clients} clients", samples, time.monotonic() - started, raw_small_ms)
            watch = MemoryWatch(data_dir)
            started = time.monotonic()
            samples = run_clients(base, tokens, max(steps), args.soak_seconds, on_second=watch.sample)
            label = f"{max(steps)} clients for {args.soak_seconds:.0f} s"
            report_step(label, samples, time.monotonic() - started, raw_small_ms)
            watch.report()
    finally:
        worker.kill()  # its pool children exit with it
        worker.wait()


if __name__ == "__main__":
    main()
