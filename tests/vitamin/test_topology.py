"""A multi-node topology on one machine, end to end: what docs/operations.md deploys, started for real.

Two web/query nodes (gunicorn, `vitamin.wsgi`) on different ports, two Celery workers and one beat,
each a "host" of its own (its own VITAMIN_DATA_DIR: scratch, query temp files, beat's schedule),
sharing only what hosts share: a private PostgreSQL and a private Redis (broker, task results and
quota counters; tests/services_support.py) and the S3-compatible object store, which holds the
published versions and the job results (SeaweedFS, tests/object_store_support.py). Every process is
started from its line of deploy/Procfile, configured by environment variables only, the same on
every node.

The scenario: a refresh asked for on the admin host is built by a worker and published, and both web
nodes serve the new version; a partner's token from one node works on the other and the same query
gets the same answer through both; jobs submitted through both nodes are run by both workers (each
worker's Celery events say which ran what) and their results download through the other node; a
daily quota of N queries holds exactly across both nodes under concurrent requests; beat, started
once, queues a due scheduled refresh once; and the audit chain verifies at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from celery import Celery
from live_demo import free_port, processes_using, wait_until_ready
from object_store_support import ACCESS_KEY, REGION, SECRET_KEY
from services_support import own_postgres, own_redis  # noqa: F401 - fixtures

from institutions.credit_code import check_character
from testenv import REPO_DIR

pytestmark = pytest.mark.slow

WORKERS = (f"w1@{socket.gethostname()}", f"w2@{socket.gethostname()}")  # deploy/Procfile's name@%h
PROCFILE = REPO_DIR / "deploy" / "Procfile"
# Source rows of the demo: enough for every aggregate group to pass k (tests/live_demo.py). The source
# "grows" after bootstrap, so that the refresh publishes a new version (the same rows would be unchanged).
BOOTSTRAP_TRANSACTIONS = 50_000
DEMO_TRANSACTIONS = 60_000
START_TIMEOUT_SECONDS = 90
QUOTA_QUERIES_PER_DAY = 5
QUOTA_REQUESTS = 16
QUOTA_CREDIT_BASE = "91330100MA2TXPX18"  # 17 characters of the credit code alphabet
QUOTA_CREDIT_CODE = QUOTA_CREDIT_BASE + check_character(QUOTA_CREDIT_BASE)
REFRESHED = "card_transactions"  # asked for by hand
SCHEDULED = "listed_brands"  # made due, for beat's dispatcher
TOTALS_SQL = (
    "SELECT channel, COUNT(*) AS n, SUM(amount) AS amount FROM card_transactions GROUP BY channel ORDER BY channel"
)


class TaskEvents:
    """Which worker received which task, from the workers' own events (`celery worker -E`), as Flower reads them."""

    def __init__(self, broker_url: str):
        self.app = Celery("topology-events", broker=broker_url, set_as_current=False)
        self.received: list[dict] = []
        self._receiver = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="task-events", daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the event receiver did not connect"

    def _listen(self) -> None:
        with self.app.connection_for_read() as connection:
            receiver = self.app.events.Receiver(connection, handlers={"task-received": self.received.append})
            bound = receiver.on_consume_ready

            def on_consume_ready(*args, **kwargs):  # its queue is bound to the events exchange: nothing is missed
                bound(*args, **kwargs)
                self._ready.set()

            receiver.on_consume_ready = on_consume_ready
            self._receiver = receiver
            receiver.capture(limit=None, timeout=None, wakeup=False)  # until stop()

    def hosts_of(self, task_name: str, task: str | None = None) -> list[str]:
        """Hostnames of the workers that received `task_name` (only the task whose id, or one of whose
        arguments, is `task`); a task received twice (redelivered) is listed twice."""
        return [
            event["hostname"]
            for event in list(self.received)
            if event.get("name") == task_name
            and (task is None or event.get("uuid") == task or task in event.get("args", ""))
        ]

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)
        self.app.close()


@dataclass
class Topology:
    root: Path
    env: dict[str, str]  # what every node's environment has in common
    webs: list[str]  # base URLs of the web nodes
    events: TaskEvents
    partner: dict  # the demo fund: client_id, client_secret
    beat_started: float
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def manage(self, *argv: str, extra: dict[str, str] | None = None) -> str:
        """`manage.py` on the admin host (the one that migrates, as in docs/operations.md)."""
        result = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "manage.py", *argv],
            cwd=REPO_DIR,
            env={**node_env(self.env, self.root, "admin"), **(extra or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"manage.py {argv[0]}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def shell_json(self, code: str):
        """What `code` prints last, as JSON (models read on the admin host)."""
        return json.loads(self.shell("import json\n" + code).strip().splitlines()[-1])

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def node_env(common: dict[str, str], root: Path, host: str) -> dict[str, str]:
    """A node's environment: the common settings and a data directory of its own."""
    return {**common, "VITAMIN_DATA_DIR": str(root / host)}


def common_env(postgres_url: str, redis, store_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VITAMIN_", "DATABASE_URL", "CELERY_", "REDIS_URL", "AWS_"))
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO_DIR), str(REPO_DIR / "platform")]),
            "DJANGO_SETTINGS_MODULE": "vitamin.settings",
            "DATABASE_URL": postgres_url,
            "CELERY_BROKER_URL": redis.url(1),
            "CELERY_RESULT_BACKEND": redis.url(2),
            "REDIS_URL": redis.url(0),
            "VITAMIN_QUOTA_BACKEND": "redis",
            "VITAMIN_STORE_URL": store_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            # Secrets every node must share: generated files would differ from host to host.
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "VITAMIN_PSEUDONYM_KEY": secrets.token_urlsafe(32),
            "VITAMIN_DEMO_TRANSACTIONS": str(DEMO_TRANSACTIONS),
            "VITAMIN_DEMO_COMPANIES": "100",
            "VITAMIN_WEB_WORKERS": "1",
            "VITAMIN_WORKER_CONCURRENCY": "1",
            "VITAMIN_QUERY_POOL_SIZE": "2",
            "VITAMIN_QUERY_CONCURRENT_PER_INSTITUTION": "32",
            "VITAMIN_LOG_FORMAT": "text",
            "VITAMIN_LOG_LEVEL": "WARNING",
        }
    )
    return env


def procfile_command(kind: str, env: dict[str, str]) -> list[str]:
    """deploy/Procfile's command for `kind`, its `${NAME:-default}`s expanded from `env` as a shell would,
    run by this interpreter (the virtualenv's `python`)."""
    lines = dict(
        line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line.strip() and not line.startswith("#")
    )
    expanded = re.sub(
        r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or (m.group(2) or ""), lines[kind].strip()
    )
    program, *arguments = shlex.split(expanded)
    assert program == "python", expanded
    return [sys.executable, *arguments]


def start(topology: Topology, name: str, kind: str, **variables: str) -> None:
    """Start process `name` as deploy/Procfile's `kind`, on a host of its own, with these variables too."""
    env = {**node_env(topology.env, topology.root, name), **variables}
    with (topology.root / f"{name}.log").open("wb") as log:
        topology.processes[name] = subprocess.Popen(  # noqa: S603 - the Procfile's argv
            procfile_command(kind, env),
            cwd=REPO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_workers(topology: Topology) -> None:
    """Both workers answer a ping over the broker (they consume the queue)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    answered: set[str] = set()
    while time.monotonic() < deadline:
        replies = topology.events.app.control.ping(timeout=1.0) or []
        answered = {host for reply in replies for host in reply}
        if set(WORKERS) <= answered:
            return
        time.sleep(0.5)
    raise AssertionError(f"workers answering: {answered}\n{topology.log('w1')}\n{topology.log('w2')}")


def stop_all(topology: Topology) -> None:
    for process in topology.processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in topology.processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    for host in ("admin", *topology.processes):
        for pid, _ in processes_using(topology.root / host):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def topology(tmp_path_factory, own_postgres, own_redis, object_store):  # noqa: F811 - fixtures
    root = tmp_path_factory.mktemp("topology")
    store_url = object_store.store_url(object_store.bucket("topology"))
    env = common_env(own_postgres.create_database("vitamin"), own_redis, store_url)
    events = TaskEvents(env["CELERY_BROKER_URL"])
    topology = Topology(root=root, env=env, webs=[], events=events, partner={}, beat_started=0.0)
    try:
        # Once per release, from one host: the schema and the demo (built in that process, into the store).
        topology.manage("migrate", "-v", "0")
        topology.manage("bootstrap", extra={"VITAMIN_DEMO_TRANSACTIONS": str(BOOTSTRAP_TRANSACTIONS)})
        topology.partner = next(
            p
            for p in json.loads((root / "admin" / "demo-credentials.json").read_text())["partners"]
            if p["type"] == "fund_company"
        )
        # A firing of listed_brands' schedule that the dispatcher has not queued yet.
        topology.shell(
            "from datetime import timedelta\nfrom django.utils import timezone\nfrom catalog.models import Dataset\n"
            f"Dataset.objects.filter(slug={SCHEDULED!r}).update(last_scheduled_at=timezone.now() - timedelta(days=40))"
        )
        for index in (1, 2):
            port = free_port()
            start(topology, f"web{index}", "web", BIND_ADDRESS="127.0.0.1", PORT=str(port))
            topology.webs.append(f"http://127.0.0.1:{port}")
        for index, hostname in enumerate(WORKERS, start=1):
            start(topology, f"w{index}", "worker", CELERY_WORKER_NAME=hostname.split("@")[0])
        start(topology, "beat", "beat")
        topology.beat_started = time.monotonic()
        for index, base in enumerate(topology.webs, start=1):
            wait_until_ready(topology.processes[f"web{index}"], base, topology.root / f"web{index}.log")
        wait_for_workers(topology)
        yield topology
    finally:
        stop_all(topology)
        events.stop()


def token_from(base: str, partner: dict, scope: str = "query") -> str:
    response = requests.post(
        f"{base}/oauth/token",
        auth=(partner["client_id"], partner["client_secret"]),
        data={"grant_type": "client_credentials", "scope": scope},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def query(base: str, token: str, sql: str) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/query",
        headers={"Authorization": f"Bearer {token}"},
        json={"sql": sql, "format": "json"},
        timeout=60,
    )


def served_version(base: str, token: str) -> str:
    response = query(base, token, TOTALS_SQL)
    assert response.status_code == 200, response.text
    return response.headers["X-Vitamin-Versions"]


def test_a_refresh_asked_for_on_the_admin_host_is_built_by_a_worker_and_served_by_every_web_node(topology):
    token = token_from(topology.webs[0], topology.partner)
    before = {served_version(base, token) for base in topology.webs}
    assert before == {f"{REFRESHED}=1"}

    out = topology.manage("refresh_dataset", REFRESHED, "--wait", "--timeout", "120")
    run = topology.shell_json(
        "from catalog.models import RefreshRun\n"
        f"run = RefreshRun.objects.filter(dataset__slug={REFRESHED!r}).latest('pk')\n"
        "print(json.dumps({'status': run.status, 'task_id': run.task_id, "
        "'version': run.version.number if run.version else None}))"
    )
    assert run["status"] == "published", out
    assert run["version"] == 2, run
    assert len(topology.events.hosts_of("catalog.refresh_dataset", run["task_id"])) == 1
    assert set(topology.events.hosts_of("catalog.refresh_dataset", run["task_id"])) <= set(WORKERS)
    # Both nodes serve the new version at once: nothing to invalidate by hand.
    assert {served_version(base, token) for base in topology.webs} == {f"{REFRESHED}=2"}


def test_a_token_from_one_web_node_works_on_the_other_and_both_give_the_same_answer(topology):
    first, second = topology.webs
    token = token_from(first, topology.partner)
    answers = [query(base, token, TOTALS_SQL) for base in (first, second, second, first)]
    assert [answer.status_code for answer in answers] == [200] * 4, [a.text[:300] for a in answers]
    bodies = {json.dumps(answer.json()["rows"]) for answer in answers}
    assert len(bodies) == 1
    assert answers[0].json()["rows"], "the aggregate returned no group"
    # Each node read the version from the object store into a cache of its own (its data directory).
    for node in ("web1", "web2"):
        cached = [path for path in (topology.root / node / "store-cache" / "objects").rglob("*") if path.is_file()]
        assert cached, f"{node} cached nothing"
    other_token = token_from(second, topology.partner)
    assert query(first, other_token, TOTALS_SQL).json()["rows"] == answers[0].json()["rows"]


def test_jobs_submitted_through_both_web_nodes_run_on_both_workers_and_download_through_either(topology):
    tokens = [token_from(base, topology.partner) for base in topology.webs]
    sql = "SELECT month, channel, COUNT(*) AS n FROM card_transactions GROUP BY month, channel"

    def submit(index: int) -> tuple[int, str]:
        node = index % 2
        response = requests.post(
            f"{topology.webs[node]}/api/v1/jobs",
            headers={"Authorization": f"Bearer {tokens[node]}"},
            json={"sql": sql, "format": "csv"},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        return node, response.json()["id"]

    jobs: list[tuple[int, str]] = []
    deadline = time.monotonic() + 90
    # Both workers idle on the one queue take turns; rounds go on (a few at most) until both have run one.
    while time.monotonic() < deadline:
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs += list(pool.map(submit, range(6)))
        finished = {job_id: wait_for_job(topology, tokens, job_id) for _, job_id in jobs}
        assert {job["state"] for job in finished.values()} == {"succeeded"}, finished
        hosts = {host for _, job_id in jobs for host in topology.events.hosts_of("query.run_query_job", job_id)}
        if hosts == set(WORKERS):
            break
    assert hosts == set(WORKERS), f"jobs ran only on {hosts}"
    assert all(len(topology.events.hosts_of("query.run_query_job", job_id)) == 1 for _, job_id in jobs)

    node, job_id = jobs[0]
    other = 1 - node
    result = requests.get(
        f"{topology.webs[other]}/api/v1/jobs/{job_id}/result",
        headers={"Authorization": f"Bearer {tokens[other]}"},
        timeout=60,
    )
    assert result.status_code == 200, result.text
    header, *rows = csv.reader(io.StringIO(result.text))
    assert header == ["month", "channel", "n"]
    assert rows


def wait_for_job(topology: Topology, tokens: list[str], job_id: str) -> dict:
    deadline = time.monotonic() + 60
    turn = 0
    while True:
        node = turn % 2  # polled through both nodes
        job = requests.get(
            f"{topology.webs[node]}/api/v1/jobs/{job_id}",
            headers={"Authorization": f"Bearer {tokens[node]}"},
            timeout=30,
        ).json()
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        turn += 1
        time.sleep(0.2)


def test_a_daily_query_quota_is_exact_across_both_web_nodes_under_concurrent_requests(topology):
    partner = quota_partner(topology)
    tokens = [token_from(base, partner, "query usage:read") for base in topology.webs]
    # One query through each node first: each node's charge is seen by the other.
    firsts = [query(topology.webs[node], tokens[node], TOTALS_SQL) for node in (0, 1)]
    assert [answer.status_code for answer in firsts] == [200, 200], [answer.text[:300] for answer in firsts]
    rows_per_answer = len(firsts[0].json()["rows"])

    def one(index: int) -> requests.Response:
        node = index % 2
        return query(topology.webs[node], tokens[node], TOTALS_SQL)

    with ThreadPoolExecutor(max_workers=8) as pool:  # then a burst through both at once
        answers = list(pool.map(one, range(QUOTA_REQUESTS)))
    statuses = Counter(answer.status_code for answer in answers)
    left = QUOTA_QUERIES_PER_DAY - 2
    assert statuses == {200: left, 429: QUOTA_REQUESTS - left}, [(a.status_code, a.text[:200]) for a in answers]
    refused = [answer.json()["error"] for answer in answers if answer.status_code == 429]
    assert {body["code"] for body in refused} == {"quota_exceeded"}
    assert {body["details"]["metric"] for body in refused} == {"queries"}
    assert all(answer.headers.get("Retry-After") for answer in answers if answer.status_code == 429)
    for base, token in zip(topology.webs, tokens, strict=True):
        usage = requests.get(f"{base}/api/v1/usage", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert usage.status_code == 200, usage.text
        used = used_today(usage.json())
        assert used["queries"] == QUOTA_QUERIES_PER_DAY, usage.text
        # Rows are charged after each query by the node that ran it: the same total on both.
        assert used["rows_returned"] == QUOTA_QUERIES_PER_DAY * rows_per_answer, usage.text


def quota_partner(topology: Topology) -> dict:
    """An institution subscribed to card_transactions under a plan of QUOTA_QUERIES_PER_DAY queries a day,
    made with the operator's commands; its client's credentials."""
    topology.shell(
        "from access.models import QuotaPlan\n"
        "QuotaPlan.objects.create(name='topology-quota', queries_per_day="
        f"{QUOTA_QUERIES_PER_DAY}, rows_returned_per_day=10**9, bytes_scanned_per_day=10**12, "
        "bytes_downloaded_per_day=10**12, lookups_per_day=0, concurrent_queries=64, max_query_seconds=60, "
        "max_result_rows=100000)"
    )
    institution = json.loads(
        topology.manage(
            "create_institution",
            "--name",
            "Quota Fund",
            "--type",
            "fund_company",
            "--credit-code",
            QUOTA_CREDIT_CODE,
            "--contact-email",
            "quota@example.com",
            "--approve",
            "--json",
        )  # fmt: skip
    )
    topology.manage(
        "grant_subscription", "--institution", str(institution["id"]), "--dataset", REFRESHED, "--modes", "query",
        "--plan", "topology-quota",
    )  # fmt: skip
    client = json.loads(
        topology.manage(
            "create_client", str(institution["id"]), "--name", "quota", "--scope", "query usage:read", "--json"
        )
    )
    return {"client_id": client["client_id"], "client_secret": client["client_secret"]}


def used_today(usage: dict) -> dict[str, int]:
    """The one subscription's counters of today (the last day `GET /api/v1/usage` lists)."""
    (subscription,) = usage["subscriptions"]
    return {metric: value["used"] for metric, value in subscription["days"][-1]["metrics"].items()}


def test_beat_started_once_queues_a_due_scheduled_refresh_once(topology):
    deadline = topology.beat_started + 100  # the dispatcher runs every 60 s
    runs: list = []
    while time.monotonic() < deadline:
        runs = topology.shell_json(
            "from catalog.models import RefreshRun\n"
            f"print(json.dumps(list(RefreshRun.objects.filter(dataset__slug={SCHEDULED!r}, trigger='schedule')"
            ".values('status', 'task_id'))))"
        )
        if runs and runs[0]["status"] not in ("queued", "running"):
            break
        time.sleep(3)
    assert len(runs) == 1, f"{runs}\n{topology.log('beat')}"
    assert runs[0]["status"] in ("published", "unchanged"), runs
    assert len(topology.events.hosts_of("catalog.refresh_dataset", runs[0]["task_id"])) == 1
    # Beat's other schedules reach the workers too (the recovery sweep runs every 10 s).
    assert set(topology.events.hosts_of("catalog.recover_refreshes")) & set(WORKERS)


def test_the_audit_chain_verifies_after_the_scenario(topology):
    result = json.loads(topology.manage("verify_audit", "--json"))
    assert result["ok"] is True, result
    assert result["triggers_installed"] is True
    # The scenario's own events are in the chain: queries through both nodes, the jobs, the refresh.
    assert result["events_checked"] > QUOTA_QUERIES_PER_DAY + 12, result
