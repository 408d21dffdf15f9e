"""Consented lookups through a live server, against raw DuckDB and an indexed SQLite table on the same rows.

    .venv/bin/python bench/bench_lookup.py --rows 10000000      # 10M customers (about 8 min on 2 cores)
    .venv/bin/python bench/bench_lookup.py --rows 200000        # quick

Builds `credit_profiles` with the real spec and build (datasets.build: sorted by the `customer`
pseudonym in small row groups, plus the `mobile` index file) from the synthetic connector with
--rows customers, publishes it as version 1 in a temporary store, records it in a fresh database
with a bank, a `lookup` client, a bearer token and an approved lookup subscription (manage.py
shell), starts the same multi-process gunicorn as bench_query_api.py, and times
POST /api/v1/datasets/credit_profiles/lookup with `requests`. Every API figure includes
authentication, the grant check, parsing and normalizing the identifiers, pseudonymizing them,
the point reads, the quota charge, the audit event, the kept request and consents, and HTTP.
Items carry raw resident IDs of consumers drawn at random from the source (consumer i is row i
of the synthetic source: `connectors.synthetic.people.Population`); a few fell to k-anonymity
suppression and are answered not_found, on both sides alike. Every request has a new
transaction id (a repeated one is a replay, measured on its own).

- batch:      --batch (10,000) items against raw DuckDB joining the same 10,000 pseudonyms, as an
              Arrow table, to read_parquet of the version's data files, selecting the lookup fields
              (goal: ratio <= 2). Also in threshold mode (credit_score >= 600: Y/N), replayed (the
              same transaction id again), and the engine alone (datasets.lookup.reader.LookupTable.find
              in this process)
- one item:   single-item lookups one after another (p50, goal <= 15 ms), the engine alone for one
              pseudonym, and 8 client threads at once (throughput, goal >= 150 lookups/s; p50, p99),
              each against the same customers read by primary key from a SQLite table of the version's
              rows (customer TEXT PRIMARY KEY, WITHOUT ROWID) with a point SELECT: one thread, then one
              connection per thread in 8 threads

Medians of --repeat rounds, each with new customers, alternating ours and raw. Each line reads
`name: ours X, raw Y, ratio Z`. --data-dir keeps the built version and the SQLite table for the
next run of the same size and the same build code (the folder's name hashes the spec and the build's sources).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import figures
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests
from bench_query_api import CLIENT_THREADS, _concurrently, free_port, server_environment, start_server
from bench_query_engine import THREADS

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]

from connectors.synthetic.people import Population  # noqa: E402
from datasets.anonymize import PseudonymKey  # noqa: E402
from datasets.build import build, connector_for  # noqa: E402
from datasets.identifiers import digest, normalize  # noqa: E402
from datasets.lookup.reader import LookupTable  # noqa: E402
from datasets.publish import publish  # noqa: E402
from datasets.spec import load_spec  # noqa: E402
from datasets.storage import Store  # noqa: E402

SLUG = "credit_profiles"
SPEC_PATH = REPO / "datasets" / "specs" / f"{SLUG}.yaml"
SEED = 2015  # the spec's source seed: consumer i of Population(SEED) is row i of the source
RELEASE = "r1"
MASTER_KEY = "bench-lookup-master-key-0123456789abcdef"  # the server's VITAMIN_PSEUDONYM_KEY too
MEMORY_LIMIT_MB = 4096
BATCH_GOAL = 2.0
SINGLE_P50_GOAL_MS = 15.0
THROUGHPUT_GOAL = 150.0
CUTOFF = 600
# What a lookup answers by default (every field the spec offers), read by every side alike.
LOOKUP_FIELDS = list(load_spec(SPEC_PATH, {"VITAMIN_DEMO_CONSUMERS": 1000}).lookup.fields)

SETUP = textwrap.dedent(
    """
    import json, secrets
    from datetime import timedelta
    from django.utils import timezone
    from catalog.models import Dataset, DatasetVersion
    from catalog.sync import sync_datasets
    from datasets.spec import load_spec
    from access import subscriptions
    from access.models import QuotaPlan
    from institutions import lifecycle
    from institutions.credit_code import check_character
    from institutions.models import InstitutionStatus, InstitutionType
    from oauth.clients import create_client
    from oauth.credentials import hash_secret
    from oauth.models import GrantType, Token

    spec = load_spec(SPEC_PATH, {"VITAMIN_DEMO_CONSUMERS": ROWS})
    built = json.loads(open(SUMMARY).read())
    sync_datasets([spec])
    dataset = Dataset.objects.get(slug=SLUG)
    Dataset.objects.filter(pk=dataset.pk).update(pseudonym_release=RELEASE)
    # As the refresh records a published version (tests/lookups/conftest.py does the same).
    DatasetVersion.objects.create(dataset=dataset, number=1, location=f"datasets/{SLUG}/v1", files=built["files"],
        row_count=built["row_count"], bytes=built["size_bytes"], schema=built["schema"],
        schema_hash=built["schema_hash"], content_hash=built["content_hash"], column_stats=built["column_stats"],
        privacy_report=built["privacy"], source_watermark=built["source_watermark"] or "",
        pseudonym_release=RELEASE, spec=spec.to_document(), spec_fingerprint=built["spec_fingerprint"])
    base = "91330100000000002"
    institution = lifecycle.file_application(applicant=None, legal_name="Bench Bank", type=InstitutionType.BANK,
        credit_code=base + check_character(base), contact_name="Bench", contact_email="bench@example.com")
    lifecycle.change_status(institution, InstitutionStatus.APPROVED, reason="Benchmark.")
    plan = QuotaPlan.objects.create(name="bench", queries_per_day=10**9, rows_returned_per_day=10**15,
        bytes_scanned_per_day=10**18, bytes_downloaded_per_day=10**18, lookups_per_day=10**15,
        cohort_customers_per_day=10**15, concurrent_queries=64, max_query_seconds=600, max_result_rows=2_000_000)
    subscription = subscriptions.request_access(institution, dataset, modes=["lookup"], purpose="Benchmark.", plan=plan)
    subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    client, _ = create_client(institution, name="bench", scope="lookup", grant_types=[GrantType.CLIENT_CREDENTIALS])
    token = secrets.token_urlsafe(32)
    Token.objects.create(client=client, grant_type=GrantType.CLIENT_CREDENTIALS, scope="lookup",
        access_token_hash=hash_secret(token), access_expires_at=timezone.now() + timedelta(hours=12))
    print("TOKEN=" + token)
    """
)


# --- the version, its baselines, the customers ------------------------------------------------


def build_fingerprint() -> str:
    """What a kept version depends on: the spec file and the sources that build and lay it out."""
    digest_ = hashlib.sha256()
    for path in (SPEC_PATH, *(REPO / "datasets" / name for name in ("build.py", "spec.py", "anonymize.py"))):
        digest_.update(path.read_bytes())
    return digest_.hexdigest()[:12]


def build_version(rows: int, cache: Path) -> tuple[Path, dict]:
    """credit_profiles v1 with `rows` customers in `cache`/store (built once per cache folder), and its summary."""
    store_root, summary_path = cache / "store", cache / "version.json"
    if summary_path.exists():
        print(f"reusing the version built in {cache}", flush=True)
        return store_root, json.loads(summary_path.read_text())
    spec = load_spec(SPEC_PATH, {"VITAMIN_DEMO_CONSUMERS": rows})
    store = Store.from_url(str(store_root))
    started = time.perf_counter()
    result = build(
        spec,
        connector_for(spec),
        master_key=MASTER_KEY.encode(),
        release=RELEASE,
        store=store,
        scratch_dir=cache / "scratch",
        threads=THREADS,
    )
    publish(store, SLUG, 1, result)
    summary = result.to_dict()
    summary_path.write_text(json.dumps(summary))
    print(
        f"built {SLUG}: {result.row_count:,} customers published of {rows:,}, "
        f"{result.size_bytes / 1e6:.0f} MB in {len(result.files)} files, {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return store_root, summary


def lookup_table(store_root: Path, summary: dict) -> tuple[LookupTable, list[str]]:
    """The version as the API reads it (lookups.service.lookup_table, without Django), and its data files."""
    store = Store.from_url(str(store_root))
    location = f"datasets/{SLUG}/v1"
    data = [store.path(location, entry["path"]) for entry in summary["files"] if not entry.get("index")]
    table = LookupTable(
        fs=store.fs,
        data_paths=tuple(data),
        primary_key="customer",
        index_paths={e["index"]: store.path(location, e["path"]) for e in summary["files"] if e.get("index")},
        cache_key=(store.root, location, *(entry.get("sha256", "") for entry in summary["files"])),
    )
    return table, data


def sqlite_baseline(data_files: list[str], path: Path) -> None:
    """A SQLite table of every row of the version, keyed by `customer` (written once per cache folder)."""
    if path.exists():
        return
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    schema = pq.read_schema(data_files[0])
    types = {pa.types.is_integer: "INTEGER", pa.types.is_floating: "REAL"}

    def sql_type(field: pa.Field) -> str:
        return next((name for test, name in types.items() if test(field.type)), "TEXT")

    columns = ", ".join(
        f"{f.name} TEXT PRIMARY KEY" if f.name == "customer" else f"{f.name} {sql_type(f)}" for f in schema
    )
    con = sqlite3.connect(partial)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(f"CREATE TABLE {SLUG} ({columns}) WITHOUT ROWID")
    insert = f"INSERT INTO {SLUG} VALUES ({', '.join('?' * len(schema))})"
    rows = 0
    for data_file in data_files:  # sorted by customer: the primary key's B-tree is filled in order
        for batch in pq.ParquetFile(data_file).iter_batches(batch_size=100_000):
            con.executemany(insert, zip(*(column.to_pylist() for column in batch.columns), strict=True))
            rows += batch.num_rows
    con.commit()
    con.close()
    partial.rename(path)
    print(f"SQLite baseline: {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)


class Customers:
    """Consumers of the source drawn at random: their resident IDs (raw, as a bank sends them) and pseudonyms."""

    def __init__(self, rows: int):
        self.rows = rows
        self.population = Population(SEED)
        self.key = PseudonymKey.derive(MASTER_KEY.encode(), SLUG, RELEASE)
        self.rng = np.random.default_rng(20260101)

    def draw(self, n: int) -> tuple[list[str], list[str]]:
        ids = np.sort(self.rng.choice(self.rows, size=min(n, self.rows), replace=False)).astype(np.int64)
        self.rng.shuffle(ids)
        resident_ids = self.population.columns(ids, ["id_number"])["id_number"].to_pylist()
        pseudonyms = [self.key.pseudonym(digest(normalize("resident_id", value))) for value in resident_ids]
        return resident_ids, pseudonyms


def items_json(resident_ids: list[str]) -> bytes:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()
    return json.dumps(
        [
            {
                "reference": f"r{index}",
                "id_type": "resident_id",
                "id": value,
                "consent": {"reference": f"C{index}", "scope": "credit_assessment", "expires_at": expires},
            }
            for index, value in enumerate(resident_ids)
        ],
        separators=(",", ":"),
    ).encode()


def body(transaction_id: str, items: bytes, threshold: bool = False) -> bytes:
    extra = f',"threshold":{{"field":"credit_score","cutoff":{CUTOFF}}}' if threshold else ""
    return b'{"transaction_id":"' + transaction_id.encode() + b'","items":' + items + extra.encode() + b"}"


def new_transaction_id() -> str:
    return "bench-" + uuid.uuid4().hex


# --- the server -----------------------------------------------------------------------------


def setup(env: dict[str, str], rows: int, summary_path: Path) -> str:
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True)  # noqa: S603
    script = (
        f"SPEC_PATH = {str(SPEC_PATH)!r}\nROWS = {rows}\nSUMMARY = {str(summary_path)!r}\n"
        f"SLUG = {SLUG!r}\nRELEASE = {RELEASE!r}\n" + SETUP
    )
    output = subprocess.run(  # noqa: S603
        [*manage, "shell", "-c", script], env=env, check=True, capture_output=True, text=True
    ).stdout
    return next(line[len("TOKEN=") :] for line in output.splitlines() if line.startswith("TOKEN="))


class Api:
    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token
        self.http = self.session()

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        session.headers["Content-Type"] = "application/json"
        return session

    def post(self, data: bytes, session: requests.Session | None = None) -> requests.Response:
        response = (session or self.http).post(self.url, data=data)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
        return response


# --- measurements ---------------------------------------------------------------------------


def report(name: str, ours: float, raw: float, unit: str = "ms", *, goal: str | None = None, met=None) -> None:
    """Print a figure, and keep it for docs/benchmarks.md when bench/run.py runs this."""
    higher = unit.endswith("/s")
    verdict = "" if goal is None else f"  (goal {goal}: {'met' if met else 'NOT met'})"
    shown = [f"{value:.1f}" if value >= 1 else f"{value:.3f}" for value in (ours, raw)]
    print(f"{name}: ours {shown[0]} {unit}, raw {shown[1]} {unit}, ratio {ours / raw:.2f}{verdict}", flush=True)
    figures.record(name, ours, raw, unit, goal=goal, met=met, higher_is_better=higher)


def batches(api: Api, customers: Customers, table: LookupTable, data_files: list[str], size: int, repeat: int):
    raw = duckdb.connect(config={"threads": THREADS, "memory_limit": f"{MEMORY_LIMIT_MB}MB"})
    raw.execute("SET GLOBAL parquet_metadata_cache = true")
    fields = ", ".join(f"d.{name}" for name in LOOKUP_FIELDS)
    join_sql = (
        f"SELECT d.customer, {fields} FROM read_parquet({data_files!r}) AS d "
        "JOIN wanted AS w ON d.customer = w.customer"
    )

    def raw_join(pseudonyms: list[str]) -> int:
        raw.register("wanted", pa.table({"customer": pa.array(pseudonyms, pa.string())}))
        found = raw.sql(join_sql).to_arrow_table()
        raw.unregister("wanted")
        return found.num_rows

    samples: dict[str, list[float]] = {name: [] for name in ("fields", "threshold", "engine", "raw")}
    last = None
    for round_ in range(repeat + 1):  # round 0 warms up both sides (footers, page cache, both gunicorn workers)
        resident_ids, pseudonyms = customers.draw(size)
        items = items_json(resident_ids)
        timed = {}
        started = time.perf_counter()
        found_raw = raw_join(pseudonyms)
        timed["raw"] = time.perf_counter() - started
        transaction_id = new_transaction_id()
        sent = body(transaction_id, items)
        started = time.perf_counter()
        response = api.post(sent)
        timed["fields"] = time.perf_counter() - started
        answer = json.loads(response.content)
        if answer["matched"] != found_raw or answer["items"] != len(resident_ids):
            raise SystemExit(f"the API matched {answer['matched']} customers, raw DuckDB {found_raw}")
        started = time.perf_counter()
        found = table.find("customer", set(pseudonyms), LOOKUP_FIELDS)
        timed["engine"] = time.perf_counter() - started
        if found.num_rows != found_raw:
            raise SystemExit(f"LookupTable.find found {found.num_rows} customers, raw DuckDB {found_raw}")
        started = time.perf_counter()
        api.post(body(new_transaction_id(), items, threshold=True))
        timed["threshold"] = time.perf_counter() - started
        if round_:
            for name, seconds in timed.items():
                samples[name].append(seconds * 1000)
        last = (sent, found_raw)
    raw.close()

    sent, matched = last
    replays = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = api.post(sent)
        replays.append((time.perf_counter() - started) * 1000)
        if response.headers.get("X-Vitamin-Replayed") != "true":
            raise SystemExit("the repeated transaction id was not replayed")
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"batch of {size:,}: {matched:,} matched (median of {repeat})", flush=True)
    baseline = "raw: DuckDB join on the files"
    goal = f"≤ {BATCH_GOAL}"
    report(
        f"batch of {size:,} ({baseline})",
        median["fields"],
        median["raw"],
        goal=goal,
        met=median["fields"] <= BATCH_GOAL * median["raw"],
    )
    report(f"batch of {size:,}, threshold answer ({baseline})", median["threshold"], median["raw"])
    report(f"batch of {size:,}, replayed ({baseline})", statistics.median(replays), median["raw"])
    report(f"batch of {size:,}, engine alone: LookupTable.find ({baseline})", median["engine"], median["raw"])


def single_items(api: Api, customers: Customers, table: LookupTable, sqlite_path: Path, requests_: int):
    select = f"SELECT customer, {', '.join(LOOKUP_FIELDS)} FROM {SLUG} WHERE customer = ?"

    # One after another: API, engine, SQLite, alternating per customer so drift hits all alike.
    resident_ids, pseudonyms = customers.draw(requests_ + 20)
    bodies = [body(new_transaction_id(), items_json([value])) for value in resident_ids]
    con = sqlite3.connect(sqlite_path)
    times: dict[str, list[float]] = {"api": [], "engine": [], "sqlite": []}
    for index, (sent, pseudonym) in enumerate(zip(bodies, pseudonyms, strict=True)):
        started = time.perf_counter()
        api.post(sent)
        api_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        table.find("customer", {pseudonym}, LOOKUP_FIELDS)
        engine_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        con.execute(select, (pseudonym,)).fetchone()
        sqlite_ms = (time.perf_counter() - started) * 1000
        if index >= 20:  # the first ones warm up connections, caches and both gunicorn workers
            times["api"].append(api_ms)
            times["engine"].append(engine_ms)
            times["sqlite"].append(sqlite_ms)
    con.close()
    p50 = {name: statistics.median(values) for name, values in times.items()}
    report(
        "one item, p50 (raw: SQLite point SELECT)",
        p50["api"],
        p50["sqlite"],
        goal=f"≤ {SINGLE_P50_GOAL_MS:g} ms",
        met=p50["api"] <= SINGLE_P50_GOAL_MS,
    )
    report("one item, engine alone: LookupTable.find, p50 (raw: SQLite)", p50["engine"], p50["sqlite"])

    # 8 clients at once: through the API, then SQLite with one connection per thread.
    total = requests_ * 2
    resident_ids, pseudonyms = customers.draw(total + CLIENT_THREADS * 2)
    api_bodies = iter([body(new_transaction_id(), items_json([value])) for value in resident_ids])
    sqlite_keys = iter(pseudonyms)
    lock = threading.Lock()

    def api_client():
        session = api.session()

        def one() -> None:
            with lock:
                sent = next(api_bodies)
            api.post(sent, session)

        return one

    def sqlite_client():
        connection = sqlite3.connect(sqlite_path)

        def one() -> None:
            with lock:
                key = next(sqlite_keys)
            connection.execute(select, (key,)).fetchone()  # None for a suppressed customer, as through the API

        return one

    ours = _concurrently(api_client, total)
    baseline = _concurrently(sqlite_client, total)
    for name, (rate, p50_, p99) in (("ours", ours), ("raw", baseline)):
        print(f"one item x{CLIENT_THREADS} {name}: {rate:.0f} lookups/s, p50 {p50_:.2f} ms, p99 {p99:.2f} ms")
    report(
        f"one item x{CLIENT_THREADS} throughput (raw: SQLite, {CLIENT_THREADS} threads)",
        ours[0],
        baseline[0],
        "lookups/s",
        goal=f"≥ {THROUGHPUT_GOAL:g} lookups/s",
        met=ours[0] >= THROUGHPUT_GOAL,
    )
    report(f"one item x{CLIENT_THREADS} p50 (raw: SQLite, {CLIENT_THREADS} threads)", ours[1], baseline[1])
    report(f"one item x{CLIENT_THREADS} p99 (raw: SQLite, {CLIENT_THREADS} threads)", ours[2], baseline[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="customers in credit_profiles (default 10M)")
    parser.add_argument("--batch", type=int, default=10_000, help="items in a batch (default 10,000)")
    parser.add_argument("--repeat", type=int, default=7, help="batches per figure (the median is reported)")
    parser.add_argument("--single-requests", type=int, default=300, help="single-item lookups one after another")
    parser.add_argument("--data-dir", help="keep the built version and the SQLite table here and reuse them")
    parser.add_argument(
        "--database-url", help="e.g. postgres://postgres@127.0.0.1:5432/vitamin_bench (default: SQLite)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    cache = Path(args.data_dir) / f"{SLUG}_{args.rows}_{build_fingerprint()}" if args.data_dir else work / "version"
    cache.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        store_root, summary = build_version(args.rows, cache)
        table, data_files = lookup_table(store_root, summary)
        sqlite_path = cache / "baseline.sqlite3"
        sqlite_baseline(data_files, sqlite_path)
        summary_path = cache / "version.json"

        env = server_environment(work / "data", args.database_url)
        env["VITAMIN_STORE_URL"] = str(store_root)
        env["VITAMIN_PSEUDONYM_KEY"] = MASTER_KEY
        env["VITAMIN_DEMO_CONSUMERS"] = str(args.rows)
        if args.batch > 10_000:  # the platform's default limit
            env["VITAMIN_LOOKUP_MAX_ITEMS"] = str(args.batch)
        token = setup(env, args.rows, summary_path)
        port = free_port()
        server = start_server(env, port)
        api = Api(f"http://127.0.0.1:{port}/api/v1/datasets/{SLUG}/lookup", token)
        customers = Customers(args.rows)
        print(f"{summary['row_count']:,} customers; {THREADS} threads; median of {args.repeat}", flush=True)
        batches(api, customers, table, data_files, args.batch, args.repeat)
        single_items(api, customers, table, sqlite_path, args.single_requests)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
