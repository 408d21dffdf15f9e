"""A fresh install's demo server, live on a free port, for tests that talk to it over HTTP.

`start_demo_server(root)` does what `make run` does on a fresh checkout, in `root/var`:
`manage.py migrate`, `manage.py bootstrap` (the demo partners and their credentials file, the
`demo` plan, the demo datasets built from `transactions` source rows, the demo subscriptions,
`demo-customers.json`), then `manage.py run` (gunicorn, a Celery worker and beat) on a free port,
and waits until /readyz answers 200. It yields a `DemoServer`; on leaving, the server is stopped
and every process started with that data directory in its environment is killed, so nothing
outlives the test.

Use it from a module- or session-scoped fixture: a start takes about a minute.

    with start_demo_server(tmp_path_factory.mktemp("demo")) as demo:
        requests.get(f"{demo.base}/readyz")

`before_run(demo)`, when given, runs after bootstrap and before the server starts (on the same
`DemoServer`, `base` already chosen), for setup that needs `manage.py` on the fresh database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from testenv import REPO_DIR

# Source rows and listed companies of the demo datasets: enough for every aggregate group to pass k,
# and for every month of the company-level consumption history to have companies past its k.
DEMO_TRANSACTIONS = 50_000
DEMO_COMPANIES = 100
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30
# The test run's own services are not the demo server's: it uses its embedded defaults, like `make run`.
_SERVICE_SETTINGS = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "VITAMIN_QUOTA_BACKEND")


@dataclass
class DemoServer:
    base: str  # http://127.0.0.1:<port>, no trailing slash
    env: dict[str, str]  # the server's environment, for manage.py commands and examples
    data_dir: Path  # what `var/` is after `make run`
    log: Path  # the server's stdout and stderr
    partners: list[dict] = field(default_factory=list)  # demo-credentials.json's "partners"

    def partner(self, type: str) -> dict:
        """The demo partner of this institution type ("fund_company", "bank")."""
        return next(entry for entry in self.partners if entry["type"] == type)

    def manage(self, *argv: str, extra: dict[str, str] | None = None) -> str:
        return manage(self.env, *argv, extra=extra)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_using(data_dir: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process started with this data directory in its environment: the
    server's, and only those."""
    marker = f"VITAMIN_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append((int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found


def manage(env: dict[str, str], *argv: str, extra: dict[str, str] | None = None) -> str:
    """Run `manage.py` with this environment; its stdout, or an AssertionError with its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=REPO_DIR,
        env={**env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"manage.py {' '.join(argv)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@contextlib.contextmanager
def start_demo_server(
    root: Path,
    *,
    transactions: int = DEMO_TRANSACTIONS,
    extra_env: dict[str, str] | None = None,
    before_run: Callable[[DemoServer], None] | None = None,
) -> Iterator[DemoServer]:
    data_dir = root / "var"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "VITAMIN_DATA_DIR": str(data_dir),
        "VITAMIN_PUBLIC_URL": base,
        "VITAMIN_DEMO_TRANSACTIONS": str(transactions),
        "VITAMIN_DEMO_COMPANIES": str(DEMO_COMPANIES),
        "VITAMIN_WEB_WORKERS": "1",
        "VITAMIN_WORKER_CONCURRENCY": "1",
        "VITAMIN_QUERY_POOL_SIZE": "1",
        "VITAMIN_LOG_FORMAT": "text",
        "VITAMIN_LOG_LEVEL": "WARNING",
    }
    for name in (*_SERVICE_SETTINGS, "VITAMIN_STORE_URL"):
        env.pop(name, None)
    env.update(extra_env or {})
    manage(env, "migrate", "-v", "0")
    manage(env, "bootstrap")
    demo = DemoServer(
        base=base,
        env=env,
        data_dir=data_dir,
        log=root / "run.log",
        partners=json.loads((data_dir / "demo-credentials.json").read_text())["partners"],
    )
    if before_run is not None:
        before_run(demo)

    with demo.log.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "run", "--port", str(port)],
            cwd=REPO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_ready(server, demo.base, demo.log)
            yield demo
        finally:
            _stop(server, data_dir)


def wait_until_ready(server: subprocess.Popen, base: str, log: Path) -> None:
    """Return once `base`/readyz answers 200; fail with the end of `log` if `server` exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while server.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(server: subprocess.Popen, data_dir: Path) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
    for pid, _ in processes_using(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_partner_program(program: Path, *arguments: str, cwd: Path, timeout: int = 600, log: Path | None = None) -> str:
    """Run one of the partners' own programs (examples/) as its users would: this interpreter, outside the
    checkout, with a bare PATH and HOME, so it can use nothing of the platform. Returns its stdout."""
    result = subprocess.run(
        [sys.executable, str(program), *arguments],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    server_log = f"\n--- server log\n{log.read_text()[-2000:]}" if log is not None else ""
    assert result.returncode == 0, (
        f"{program.name} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"
        + server_log
    )
    return result.stdout
