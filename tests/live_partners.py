"""A live gunicorn with partners ready to query it: for fault tests and the load benchmark (bench/bench_load.py).

    env = web_environment(data_dir, DATABASE_URL=..., REDIS_URL=..., VITAMIN_QUOTA_BACKEND="redis")
    partners = seed_partners(env, "cards", {"province": "dimension", "amount": "measure"}, count=3)
    with start_gunicorn(env, log=tmp_path / "web.log") as base:
        requests.post(f"{base}/api/v1/query", json={"sql": ...},
                      headers={"Authorization": f"Bearer {partners[0]['token']}"})

`seed_partners` registers an open dataset whose version 1 is the Parquet already in the store's
datasets/<slug>/v1 (written by the caller) and `count` approved institutions, each with a client, a bearer
token (`catalog:read query`) and a subscription on one generous plan. Plain Python without pytest or
Django in this process: the server's own `manage.py` does the work, with the server's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

REPO_DIR = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60.0
# The test run's own service settings, which a server of its own must not inherit.
_SERVICE_SETTINGS = ("DATABASE_URL", "REDIS_URL", "VITAMIN_QUOTA_BACKEND", "VITAMIN_STORE_URL", "CELERY_BROKER_URL",
                     "CELERY_RESULT_BACKEND")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_environment(data_dir: Path, **variables: str) -> dict[str, str]:
    """A server process's environment on `data_dir`: this process's, less its service settings, plus `variables`."""
    env = {name: value for name, value in os.environ.items() if name not in _SERVICE_SETTINGS}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_DIR), str(REPO_DIR / "platform")]),
        DJANGO_SETTINGS_MODULE="vitamin.settings",
        VITAMIN_DATA_DIR=str(data_dir),
        VITAMIN_LOG_FORMAT="json",
        VITAMIN_LOG_LEVEL="WARNING",
    )
    env.update(variables)
    return env


def manage(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(REPO_DIR / "manage.py"), *argv], env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def printed(result: subprocess.CompletedProcess, prefix: str):
    """The JSON a `manage.py shell` script printed on its line starting with `prefix`."""
    return json.loads(next(line[len(prefix) :] for line in result.stdout.splitlines() if line.startswith(prefix)))


_SEED = """
import json, secrets
from datetime import timedelta
from pathlib import Path
from django.conf import settings
from django.utils import timezone
from access import subscriptions
from access.models import QuotaPlan
from catalog.models import Dataset, DatasetVersion
from datasets.spec import ColumnSpec, DatasetSpec, SourceSpec, Tier
from institutions import lifecycle
from institutions.credit_code import check_character
from institutions.models import InstitutionStatus, InstitutionType
from oauth.clients import create_client
from oauth.credentials import hash_secret
from oauth.models import GrantType, Token

files = sorted((Path(settings.STORE_URL) / "datasets" / SLUG / "v1").glob("*.parquet"))
spec = DatasetSpec(
    slug=SLUG, title=SLUG, description="", publisher="", contact="", license="", keywords=(), theme="test",
    tier=Tier.OPEN, update_frequency="daily", schedule="", time_zone="Asia/Shanghai", source=SourceSpec("parquet", {}),
    transform=None, columns=tuple(ColumnSpec(n, n, r, "", "string") for n, r in COLUMNS.items()), privacy=None,
    partitioning=(), sort_by=(), versions_kept=3, analysis=None, lookup=None, fingerprint="seed",
)
dataset = Dataset.objects.create(slug=SLUG, title=SLUG, tier="open", spec=spec.to_document(), spec_hash="seed")
DatasetVersion.objects.create(spec=spec.to_document(), spec_fingerprint="seed", dataset=dataset, number=1,
    location=f"datasets/{SLUG}/v1", files=[{"path": f.name, "size_bytes": f.stat().st_size} for f in files],
    bytes=sum(f.stat().st_size for f in files), schema=[{"name": n} for n in COLUMNS], schema_hash="seed",
    content_hash="seed", pseudonym_release="r1")
plan = QuotaPlan.objects.create(name=f"seed-{SLUG}", queries_per_day=10**9, rows_returned_per_day=10**15,
    bytes_scanned_per_day=10**18, bytes_downloaded_per_day=10**18, lookups_per_day=10**6,
    concurrent_queries=64, max_query_seconds=300, max_result_rows=10_000_000)
partners = []
for n in range(COUNT):
    base = f"9133010000{n:07d}"
    institution = lifecycle.file_application(applicant=None, legal_name=f"Partner {n}",
        type=InstitutionType.FUND_COMPANY, credit_code=base + check_character(base), contact_name="Seed",
        contact_email=f"partner{n}@example.com")
    lifecycle.change_status(institution, InstitutionStatus.APPROVED, reason="Seeded partner.")
    subscription = subscriptions.request_access(institution, dataset, modes=["query"], purpose="Seeded.", plan=plan)
    subscriptions.approve(subscription, plan=plan, expires_at=timezone.now() + timedelta(days=1))
    client, _ = create_client(institution, name="seed", scope="catalog:read query",
                              grant_types=[GrantType.CLIENT_CREDENTIALS])
    token = secrets.token_urlsafe(32)
    Token.objects.create(client=client, grant_type=GrantType.CLIENT_CREDENTIALS, scope="catalog:read query",
        access_token_hash=hash_secret(token), access_expires_at=timezone.now() + timedelta(hours=12))
    partners.append({"token": token, "institution_id": institution.pk, "subscription_id": subscription.pk})
print("SEED=" + json.dumps(partners))
"""


def seed_partners(env: dict[str, str], slug: str, columns: dict[str, str], count: int) -> list[dict]:
    """Migrate, register `slug` (`columns`: name → role) and `count` partners subscribed to it:
    [{"token", "institution_id", "subscription_id"}, ...]."""
    manage(env, "migrate", "-v", "0")
    script = f"SLUG = {slug!r}\nCOLUMNS = {columns!r}\nCOUNT = {count!r}\n" + _SEED
    return printed(manage(env, "shell", "-c", script), "SEED=")


@contextlib.contextmanager
def start_gunicorn(env: dict[str, str], *, log: Path, workers: int = 2, threads: int = 4) -> Iterator[str]:
    """gunicorn serving `vitamin.wsgi` with `env` on a free port until the block ends; yields its base URL."""
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gunicorn", "vitamin.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--threads", str(threads), "--timeout", "300"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
