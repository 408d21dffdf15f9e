"""`manage.py run` (what `make run` ends with): real gunicorn, Celery worker and beat under one supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from live_demo import free_port, processes_using

from testenv import REPO_DIR

pytestmark = pytest.mark.slow


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def served(tmp_path):
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "VITAMIN_DATA_DIR": str(data_dir),
        "VITAMIN_LOG_FORMAT": "json",
        "VITAMIN_WEB_WORKERS": "1",
        "VITAMIN_WORKER_CONCURRENCY": "1",
        "VITAMIN_DEMO_TRANSACTIONS": "5000000",  # a build that lasts long enough to be cut off (the faults tests)
    }
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_DIR, env=env, check=True, timeout=120)
    port = free_port()
    log_file = (tmp_path / "run.log").open("w+")
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "run", "--port", str(port)],
        cwd=REPO_DIR,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    ready = None
    while time.monotonic() < deadline and supervisor.poll() is None:
        try:
            ready = requests.get(f"{base}/readyz", timeout=10)
            if ready.status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(0.3)
    try:
        assert ready is not None and ready.status_code == 200, Path(log_file.name).read_text()[-3000:]
        yield {"base": base, "env": env, "data_dir": data_dir, "supervisor": supervisor, "log": Path(log_file.name)}
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=30)
        for pid, _ in processes_using(data_dir):
            os.kill(pid, signal.SIGKILL)


def test_serves_ready_runs_tasks_and_stops_every_child_on_sigterm(served):
    children = processes_using(served["data_dir"])
    commands = " ".join(cmd for _, cmd in children)
    assert "gunicorn" in commands and "worker" in commands and "beat" in commands

    # A task goes through the embedded broker to the real worker process (not eager mode).
    ping = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from vitamin.celery import ping; from vitamin.request_context import set_request_id; "
            "set_request_id('req-e2e-1234'); print(ping.delay().get(timeout=60))",
        ],
        cwd=REPO_DIR,
        env=served["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "'pong': True" in ping.stdout, ping.stderr[-2000:]
    assert "'request_id': 'req-e2e-1234'" in ping.stdout  # the task ran under the enqueuing request's id

    # A dataset refresh queued from the command line is built by the worker; --wait follows its progress.
    def manage(*argv):
        return subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=REPO_DIR,
            env=served["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert manage("sync_datasets").returncode == 0
    refreshed = manage("refresh_dataset", "stock_attention_daily", "--wait", "--timeout", "240")
    assert refreshed.returncode == 0, refreshed.stderr[-2000:]
    assert "stock_attention_daily: published v1" in refreshed.stdout

    served["supervisor"].send_signal(signal.SIGTERM)
    assert served["supervisor"].wait(timeout=40) == 0
    time.sleep(0.5)
    assert processes_using(served["data_dir"]) == []


def test_a_dying_child_is_reported_and_everything_stops(served):
    worker_pid = next(
        pid
        for pid, cmd in processes_using(served["data_dir"])
        if " worker" in cmd and parent_of(pid) == served["supervisor"].pid  # the worker itself, not a pool child
    )
    os.kill(worker_pid, signal.SIGKILL)
    code = served["supervisor"].wait(timeout=40)
    assert code != 0
    assert "worker exited unexpectedly" in served["log"].read_text()
    time.sleep(0.5)
    assert processes_using(served["data_dir"]) == []
