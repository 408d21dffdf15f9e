"""Faults on the embedded default, with real processes: `manage.py run` serving the demo, a Celery pool child
SIGKILLed in the middle of a refresh, an idle one killed, a second and third beat started beside the first, and
a gunicorn worker SIGKILLed in the middle of a partner's query.

Each test prints how long recovery took (the issue's bound, "within a minute", is the only time asserted).
Run with `-s` to see the measurements.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from live_demo import DemoServer, processes_using, start_demo_server

from testenv import REPO_DIR

pytestmark = [pytest.mark.slow]

SLUG = "card_transactions"
# The refreshes the server runs build from this many source rows (bootstrap built v1 from the demo's few):
# long enough to be killed mid-way, and new content, so the retry publishes v2.
REFRESH_ROWS = 2_000_000
RECOVERY_BOUND_SECONDS = 60 + 15  # the minute, plus the sweep's 10 s period and a worker's start


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    def bigger_source(server: DemoServer) -> None:
        server.env["VITAMIN_DEMO_TRANSACTIONS"] = str(REFRESH_ROWS)  # the environment `manage.py run` gets

    with start_demo_server(tmp_path_factory.mktemp("faults"), before_run=bigger_source) as server:
        yield server


def database(demo: DemoServer) -> sqlite3.Connection:
    return sqlite3.connect(demo.data_dir / "vitamin.sqlite3", timeout=30)


def latest_run(demo: DemoServer) -> dict:
    with database(demo) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT r.* FROM catalog_refreshrun r JOIN catalog_dataset d ON d.id = r.dataset_id "
            "WHERE d.slug = ? ORDER BY r.id DESC LIMIT 1",
            [SLUG],
        ).fetchone()
    return dict(row)


def wait_for(what: str, check, *, seconds: float, every: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {seconds} s: {what}")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def pool_children(demo: DemoServer) -> list[int]:
    """The Celery worker's pool processes: worker processes whose parent is the worker itself."""
    workers = {pid for pid, cmd in processes_using(demo.data_dir) if "celery" in cmd and " worker " in cmd}
    return [pid for pid in workers if parent_of(pid) in workers]


def partner_session(demo: DemoServer) -> requests.Session:
    fund = demo.partner("fund_company")
    token = requests.post(
        f"{demo.base}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "catalog:read query"},
        auth=(fund["client_id"], fund["client_secret"]),
        timeout=30,
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def served_version(session: requests.Session, demo: DemoServer) -> tuple[int, int]:
    """(the version a partner's query read, its row count): the catalog's latest, as the gateway serves it."""
    response = session.post(
        f"{demo.base}/api/v1/query", json={"sql": f"SELECT count(*) AS n FROM {SLUG}", "format": "json"}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    latest = session.get(f"{demo.base}/api/v1/datasets/{SLUG}", timeout=30).json()["latest_version"]
    return latest["number"], body["rows"][0][0] if isinstance(body["rows"][0], list) else body["rows"][0]["n"]


def visible_versions(demo: DemoServer) -> list[str]:
    folder = demo.data_dir / "store" / "datasets" / SLUG
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def ping_worker(demo: DemoServer, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            f"from vitamin.celery import ping; print(ping.delay().get(timeout={timeout}))",
        ],
        cwd=REPO_DIR,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )


def test_a_worker_killed_mid_refresh_keeps_v1_serving_is_retried_and_leaves_no_partial_files(demo):
    session = partner_session(demo)
    before = served_version(session, demo)
    assert before[0] == 1 and visible_versions(demo) == ["v1"]

    demo.manage("refresh_dataset", SLUG)
    run = wait_for(
        "the refresh builds",
        lambda: (r := latest_run(demo))["status"] == "running" and r["rows_processed"] > 0 and r,
        seconds=180,
    )
    assert run["attempts"] == 1
    busy = pool_children(demo)  # one (VITAMIN_WORKER_CONCURRENCY=1): the one building
    assert busy, "no pool child found"
    for pid in busy:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    # While the run is presumed alive and then retried, partners read v1, and only v1 is visible.
    def retried():
        assert served_version(session, demo) == before
        assert visible_versions(demo) == ["v1"]
        current = latest_run(demo)
        return current["id"] == run["id"] and current["attempts"] == 2 and current["status"] == "running"

    wait_for("the refresh is retried", retried, seconds=RECOVERY_BOUND_SECONDS, every=1.0)
    retried_after = time.monotonic() - killed_at
    finished = wait_for(
        "the retry finishes",
        lambda: (r := latest_run(demo))["status"] not in ("queued", "running") and r,
        seconds=600,
        every=1.0,
    )
    finished_after = time.monotonic() - killed_at
    print(
        f"\nkilled mid-refresh: retried after {retried_after:.1f} s, {finished['status']} after {finished_after:.1f} s"
    )

    assert finished["status"] == "published", finished["error"]
    assert served_version(session, demo)[0] == 2
    assert visible_versions(demo) == ["v1", "v2"]
    staging = demo.data_dir / "store" / "_staging" / SLUG
    assert not staging.exists() or list(staging.iterdir()) == []  # the killed build's staging was swept
    assert not list((demo.data_dir / "scratch").glob("run-*"))  # and its scratch folder
    with database(demo) as db:
        retries = db.execute(
            "SELECT outcome FROM audit_auditevent WHERE action = 'dataset.refresh.retry' AND target = ?", [SLUG]
        ).fetchall()
    assert retries == [("interrupted",)]
    assert "'pong': True" in ping_worker(demo).stdout  # the worker took new work after losing a child


def test_a_killed_idle_pool_child_is_replaced_and_the_worker_still_runs_tasks(demo):
    children = wait_for("an idle pool child", lambda: pool_children(demo), seconds=30)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    answered = ping_worker(demo, timeout=60)
    print(f"\nidle pool child killed: the next task answered after {time.monotonic() - killed_at:.1f} s")
    assert "'pong': True" in answered.stdout, answered.stderr[-2000:]


def test_three_beats_dispatch_a_due_refresh_once(demo):
    with database(demo) as db:
        db.execute("UPDATE catalog_dataset SET last_scheduled_at = '2000-01-01 00:00:00' WHERE slug = ?", [SLUG])
        before = db.execute("SELECT count(*) FROM catalog_refreshrun WHERE trigger = 'schedule'").fetchone()[0]
    beats = [
        subprocess.Popen(  # two more beats, each with a schedule file of its own: each fires the dispatcher at start
            [sys.executable, "-m", "celery", "-A", "vitamin", "beat", "--schedule", str(demo.data_dir / f"beat-{n}")],
            cwd=REPO_DIR,
            env={**demo.env, "PYTHONPATH": os.pathsep.join([str(REPO_DIR), str(REPO_DIR / "platform")])},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in (2, 3)
    ]
    try:
        started = time.monotonic()

        def scheduled() -> int:
            with database(demo) as db:
                return db.execute("SELECT count(*) FROM catalog_refreshrun WHERE trigger = 'schedule'").fetchone()[0]

        wait_for("a scheduled refresh", lambda: scheduled() > before, seconds=90, every=0.5)
        time.sleep(20)  # every beat has sent its dispatch (at start) by now, and the first beat its own
        print(f"\nthree beats: first scheduled refresh after {time.monotonic() - started - 20:.1f} s")
        with database(demo) as db:
            runs = db.execute(
                "SELECT r.status FROM catalog_refreshrun r JOIN catalog_dataset d ON d.id = r.dataset_id "
                "WHERE d.slug = ? AND r.trigger = 'schedule'",
                [SLUG],
            ).fetchall()
        assert len(runs) == 1, runs
    finally:
        for beat in beats:
            beat.kill()
            beat.wait()


def test_a_gunicorn_worker_killed_mid_query_gives_the_slot_back_within_seconds_and_the_audit_says_interrupted(demo):
    session = partner_session(demo)
    endless = "SELECT count(*) AS n FROM market_daily a, market_daily b, market_daily c"  # runs to its time limit
    threading.Thread(
        target=lambda: _ignore_errors(
            session.post, f"{demo.base}/api/v1/query", json={"sql": endless, "format": "json"}, timeout=300
        ),
        daemon=True,
    ).start()

    def started():
        with database(demo) as db:
            return db.execute(
                "SELECT institution, details FROM audit_auditevent WHERE action = 'query.start' AND details LIKE ?"
                " ORDER BY seq DESC LIMIT 1",
                [f"%{endless}%"],
            ).fetchone()

    institution, details = wait_for("the query starts", started, seconds=60)
    query_id = json.loads(details)["query_id"]
    subject = f"institution:{institution}"
    assert live_slots(demo, subject) >= 1
    time.sleep(2)  # well into the query
    web_workers = [pid for pid, cmd in processes_using(demo.data_dir) if "gunicorn" in cmd]
    [worker] = [pid for pid in web_workers if parent_of(pid) in web_workers]
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()

    wait_for("the slot comes back", lambda: live_slots(demo, subject) == 0, seconds=10 + 5, every=0.1)
    freed_after = time.monotonic() - killed_at

    def recorded():
        with database(demo) as db:
            return db.execute(
                "SELECT outcome FROM audit_auditevent WHERE action = 'query.run' AND details LIKE ?",
                [f'%"query_id":"{query_id}"%'],
            ).fetchall()

    assert wait_for("query.run is recorded", recorded, seconds=120, every=1.0) == [("interrupted",)]
    print(
        f"\ngunicorn worker killed mid-query: slot back after {freed_after:.1f} s, "
        f"query.run interrupted after {time.monotonic() - killed_at:.1f} s"
    )
    assert served_version(partner_session(demo), demo)[0] >= 1  # the fund queries again at once


def live_slots(demo: DemoServer, subject: str) -> int:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with database(demo) as db:
        return db.execute(
            "SELECT count(*) FROM quotas_quotalease WHERE subject = ? AND expires_at > ?", [subject, now]
        ).fetchone()[0]


def _ignore_errors(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except requests.RequestException:  # the worker serving it is killed: the connection drops
        pass
