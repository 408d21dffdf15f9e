"""delta_sharing.load_as_pandas through a live server against the same connector converting the same files from local disk.

    .venv/bin/python bench/bench_sharing.py --rows 10000000

Generates card_transactions-like Parquet (bench_query_engine.generate) as version 1 of an open
dataset in a temporary VITAMIN_DATA_DIR, creates an institution with an approved subscription in
mode `download`, a client and a bearer token of scope `download` (manage.py shell), starts a real
multi-process gunicorn on a free 127.0.0.1 port (as bench_query_api.py does) and writes a
version-1 Delta Sharing profile for that token.

The connector is the real `delta-sharing` from PyPI, in its own venv (.venv/sharing-client/, which
`make bench` builds from requirements-sharing-client.txt: its pins conflict with ours). One client
process there does both sides when asked, alternating, and times each call itself (not the
interpreter start, the imports, or freeing the frame):

- load_as_pandas: the whole table, N rows, into a pandas DataFrame through the server: the
  protocol's requests (authentication, the grant check, metadata, the file list with signed
  URLs), the file downloads over HTTP and the conversion; raw: the connector's own conversion of
  the version's files on local disk (goal: ratio <= 1.5), so that the ratio is what the protocol,
  the server and HTTP add. Also shown against pandas.read_parquet on the same local files, no goal:
  the connector converts file by file on one thread, which alone costs 1.2-1.3x pandas' own
  multi-threaded read, and no server can take that away.

Each line reads `name: ours X ms, raw Y ms, ratio Z`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests
from bench_query_api import free_port, server_environment, start_server
from bench_query_engine import generate, report

REPO = Path(__file__).resolve().parents[1]
SHARING_PYTHON = REPO / ".venv" / "sharing-client" / "bin" / "python"
SLUG = "bench_sharing"
THEME = "bench"  # the table's schema: the theme as a name
SHARE = "vitamin"
GOAL = 1.5

SETUP = textwrap.dedent(
    """
    import secrets
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
    # Open tier: no identifying column (only those are refused for download), so `buyer` is a plain
    # high-cardinality string here, the kind that costs most to turn into pandas objects.
    roles = {"province": "dimension", "month": "dimension", "category": "dimension", "channel": "dimension",
             "buyer": "dimension", "amount": "measure"}
    columns = tuple(ColumnSpec(name=n, source=n, role=r, description="",
                               type="float64" if n == "amount" else "string") for n, r in roles.items())
    spec = DatasetSpec(
        slug=SLUG, title="Bench sharing", description="", publisher="", contact="", license="", keywords=(),
        theme=THEME, tier=Tier.OPEN, update_frequency="daily", schedule="", time_zone="Asia/Shanghai",
        source=SourceSpec("parquet", {}), transform=None, columns=columns, privacy=None,
        partitioning=(), sort_by=(), versions_kept=3, analysis=None, lookup=None, fingerprint="bench",
    )
    dataset = Dataset.objects.create(slug=SLUG, title="Bench sharing", theme=THEME, tier="open",
                                     spec=spec.to_document(), spec_hash=spec.fingerprint)
    DatasetVersion.objects.create(spec=spec.to_document(), spec_fingerprint=spec.fingerprint,
        dataset=dataset, number=1, location=f"datasets/{SLUG}/v1",
        files=[{"path": f.name, "size_bytes": f.stat().st_size} for f in files],
        bytes=sum(f.stat().st_size for f in files), schema=[{"name": n} for n in roles],
        schema_hash="bench", content_hash="bench", pseudonym_release="r1")
    base = "91330100000000002"
    institution = lifecycle.file_application(applicant=None, legal_name="Bench Fund", type=InstitutionType.FUND_COMPANY,
        credit_code=base + check_character(base), contact_name="Bench", contact_email="bench@example.com")
    lifecycle.change_status(institution, InstitutionStatus.APPROVED, reason="Benchmark.")
    plan = QuotaPlan.objects.create(name="bench", queries_per_day=10**9, rows_returned_per_day=10**15,
        bytes_scanned_per_day=10**18, bytes_downloaded_per_day=10**18, lookups_per_day=10**6,
        concurrent_queries=64, max_query_seconds=600, max_result_rows=2_000_000)
    subscription = subscriptions.request_access(institution, dataset, modes=["download"], purpose="Benchmark.",
                                                plan=plan)
    subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    client, _ = create_client(institution, name="bench", scope="download",
                              grant_types=[GrantType.CLIENT_CREDENTIALS])
    token = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(hours=12)
    Token.objects.create(client=client, grant_type=GrantType.CLIENT_CREDENTIALS, scope="download",
        access_token_hash=hash_secret(token), access_expires_at=expires_at)
    print("TOKEN=" + token)
    print("EXPIRES=" + expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    """
)

# Runs in the sharing-client venv: one line in per call ("ours", "raw" or "check"), one JSON line out.
CLIENT = textwrap.dedent(
    """
    import gc, json, math, sys, time
    import delta_sharing
    import pandas

    table_url, files = sys.argv[1], json.loads(sys.argv[2])
    import pyarrow.dataset

    def as_the_connector_converts():
        # What load_as_pandas does with each file once it has it, on the local files: no network, no server.
        frames = [
            pyarrow.dataset.dataset(path, format="parquet").to_table().to_pandas(
                date_as_object=True, use_threads=False, split_blocks=False, self_destruct=True
            )
            for path in files
        ]
        return pandas.concat(frames, axis=0, ignore_index=True, copy=False)

    loaders = {
        "ours": lambda: delta_sharing.load_as_pandas(table_url),
        "raw": lambda: pandas.read_parquet(files),
        "converted": as_the_connector_converts,
    }
    for line in sys.stdin:
        command = line.strip()
        if command == "check":
            ours, raw = loaders["ours"](), loaders["raw"]()
            answer = {
                "rows": [len(ours), len(raw)],
                "columns": [list(ours.columns), list(raw.columns)],
                "same_amount": math.isclose(ours["amount"].sum(), raw["amount"].sum(), rel_tol=1e-9),
            }
            del ours, raw
        else:
            started = time.perf_counter()
            frame = loaders[command]()
            answer = {"seconds": time.perf_counter() - started, "rows": len(frame)}
            del frame
        gc.collect()
        print(json.dumps(answer), flush=True)
    """
)


class Client:
    """The connector's process in the sharing-client venv, asked for one load at a time."""

    def __init__(self, table_url: str, files: list[str]) -> None:
        env = dict(os.environ)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.process = subprocess.Popen(
            [str(SHARING_PYTHON), "-I", "-c", CLIENT, table_url, json.dumps(files)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the sharing client failed on {command!r} (exit code {self.process.wait()}; see above)")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def setup(env: dict[str, str], folder: Path) -> dict[str, str]:
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True)  # noqa: S603
    script = f"FOLDER = {str(folder)!r}\nSLUG = {SLUG!r}\nTHEME = {THEME!r}\n" + SETUP
    output = subprocess.run(  # noqa: S603
        [*manage, "shell", "-c", script], env=env, check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if line.startswith(("TOKEN=", "EXPIRES=")))


def check_endpoints(base: str, token: str) -> None:
    """Stop with a clear message when the server does not speak Delta Sharing (yet)."""
    response = requests.get(f"{base}/delta-sharing/shares", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    if response.status_code == 404:
        raise SystemExit(
            "GET /delta-sharing/shares answered 404: this server has no Delta Sharing endpoints, "
            "so there is nothing to measure (the sharing app is not installed or not routed)"
        )
    if response.status_code != 200:
        raise SystemExit(f"GET /delta-sharing/shares answered {response.status_code}: {response.text[:500]}")
    shares = [item.get("name") for item in response.json().get("items", [])]
    if SHARE not in shares:
        raise SystemExit(f"GET /delta-sharing/shares does not list the share {SHARE!r}: {response.text[:500]}")


def client_medians_ms(client: Client, commands: tuple[str, ...], *, repeat: int, rows: int) -> list[float]:
    """Median time of each command as the client measured it, run in turn (as medians_ms does)."""
    for command in commands:
        client.ask(command)  # warm-up: imports, connections, the OS page cache, the server's caches
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(repeat):
        for command, times in zip(commands, samples, strict=True):
            answer = client.ask(command)
            if answer["rows"] != rows:
                raise SystemExit(f"{command}: {answer['rows']:,} rows, expected {rows:,}")
            times.append(answer["seconds"])
    return [statistics.median(times) * 1000 for times in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--database-url", help="e.g. postgres://postgres@127.0.0.1:5432/vitamin_bench (default: SQLite)"
    )
    args = parser.parse_args()
    if not SHARING_PYTHON.exists():
        raise SystemExit(
            f"{SHARING_PYTHON} does not exist: run `make bench`, which builds the Delta Sharing client's venv "
            "from requirements-sharing-client.txt"
        )

    work = Path(tempfile.mkdtemp(prefix="bench-sharing-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    folder.mkdir(parents=True)
    server = client = None
    try:
        start = time.perf_counter()
        files = generate(args.rows, folder)
        size_bytes = sum(os.path.getsize(f) for f in files)
        print(
            f"generated {args.rows:,} rows ({len(files)} files, {size_bytes / 1e6:.0f} MB) in "
            f"{time.perf_counter() - start:.1f} s; median of {args.repeat}",
            flush=True,
        )

        env = server_environment(data_dir, args.database_url)
        created = setup(env, folder)
        port = free_port()
        server = start_server(env, port)
        base = f"http://127.0.0.1:{port}"
        check_endpoints(base, created["TOKEN"])

        profile = work / "bench.share"
        profile.write_text(
            json.dumps(
                {
                    "shareCredentialsVersion": 1,
                    "endpoint": f"{base}/delta-sharing/",
                    "bearerToken": created["TOKEN"],
                    "expirationTime": created["EXPIRES"],
                }
            ),
            encoding="utf-8",
        )
        client = Client(f"{profile}#{SHARE}.{THEME}.{SLUG}", files)
        check = client.ask("check")
        if check["rows"] != [args.rows, args.rows] or check["columns"][0] != check["columns"][1]:
            raise SystemExit(f"the connector's frame is not the files' frame: {check}")
        if not check["same_amount"]:
            raise SystemExit("the connector's frame holds other amounts than the files")
        ours, raw_ms, converted_ms = client_medians_ms(
            client, ("ours", "raw", "converted"), repeat=args.repeat, rows=args.rows
        )
        # Against the connector's own per-file conversion of the local files: what the protocol, the
        # server and HTTP add, without the client's single-threaded conversion, which we cannot change.
        report(
            f"load_as_pandas, {args.rows:,} rows (raw: the connector's conversion of the local files)",
            ours,
            converted_ms,
            goal=GOAL,
        )
        report(f"load_as_pandas, {args.rows:,} rows (raw: pandas.read_parquet, local disk)", ours, raw_ms)
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
