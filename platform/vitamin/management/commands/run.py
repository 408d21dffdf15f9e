"""Serve Vitamin on one machine: gunicorn (portal + API), a Celery worker and Celery beat.

One foreground process supervises the three children. Ctrl-C or SIGTERM stops
every child (SIGTERM, then SIGKILL after a grace period). A child that exits
on its own is reported, the others are stopped, and the command exits non-zero,
so a broken worker never goes unnoticed behind a healthy web server.

A supervisor that is killed (SIGKILL, out of memory) cannot stop anything, so the
children stop themselves: each is started with a parent-death signal
(PR_SET_PDEATHSIG) that the kernel sends when the supervisor dies, SIGTERM for
gunicorn (a graceful stop, its workers follow their master) and SIGKILL for the
Celery worker (its pool children follow it, the refresh they ran is queued again
by the recovery sweep) and beat. Each child leads a process group of its own, and
their pids are written to <VITAMIN_DATA_DIR>/run.pids, so the next `manage.py run`
stops whatever a previous one left (a child that outlived its parent's death
signal, a supervisor of an older version) before it binds the port.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("vitamin.run")
GRACE_SECONDS = 15
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class Child:
    name: str
    argv: list[str]
    death_signal: signal.Signals = signal.SIGTERM  # what the kernel sends it when the supervisor dies
    process: subprocess.Popen | None = None


def pid_file() -> Path:
    return settings.DATA_DIR / "run.pids"


def started_at_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22): tells a child from a reused pid."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def die_with(supervisor_pid: int, death_signal: signal.Signals):
    """A preexec hook: the child gets `death_signal` when the supervisor dies (Linux; elsewhere a no-op)."""

    def arm() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != supervisor_pid:  # the supervisor died before the signal was armed
            os.kill(os.getpid(), death_signal)

    return arm


def stop_leftovers(path: Path) -> list[int]:
    """Stop the process groups a previous supervisor recorded in `path` that still run; returns their pids."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    alive = [entry["pid"] for entry in recorded if started_at_ticks(entry["pid"]) == entry.get("started")]
    for pid in alive:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in alive):
        time.sleep(0.2)
    for pid in alive:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous: the port is free once the processes are gone
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in alive):
        time.sleep(0.1)
    path.unlink(missing_ok=True)
    return alive


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def port_in_use(bind: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((bind, port))
        except OSError:
            return True
    return False


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    # platform/ holds no module named `platform`, so putting it on the path cannot shadow the standard library.
    paths = [str(settings.REPO_DIR), str(settings.PLATFORM_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("DJANGO_SETTINGS_MODULE", "vitamin.settings")
    env["VITAMIN_DATA_DIR"] = str(settings.DATA_DIR)
    return env


def children(bind: str, port: int) -> list[Child]:
    python = sys.executable
    return [
        Child(
            "web",
            [
                python,
                "-m",
                "gunicorn",
                "vitamin.wsgi:application",
                "--bind",
                f"{bind}:{port}",
                "--workers",
                str(settings.WEB_WORKERS),
                "--threads",
                str(settings.WEB_THREADS),
                "--graceful-timeout",
                str(GRACE_SECONDS - 5),
                "--timeout",
                "120",
                "--log-level",
                "warning",
            ],
        ),
        Child(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "vitamin",
                "worker",
                "--concurrency",
                str(settings.WORKER_CONCURRENCY),
                "--loglevel",
                "INFO",
                "--hostname",
                f"worker-{os.getpid()}@%h",
            ],
            death_signal=signal.SIGKILL,  # a warm shutdown would wait for a build no one supervises any more
        ),
        Child(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "vitamin",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(settings.DATA_DIR / "celerybeat-schedule"),
            ],
            death_signal=signal.SIGKILL,
        ),
    ]


class Command(BaseCommand):
    help = "Serve the portal and API with gunicorn, plus a Celery worker and beat, supervised in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1", help="Address gunicorn listens on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=settings.PORT, help="Port (default: the PORT setting).")

    def handle(self, *args, bind: str, port: int, **options):
        left = stop_leftovers(pid_file())
        if left:
            self.stderr.write(f"Stopped what a previous `manage.py run` left running (process groups {left}).")
        if port_in_use(bind, port):
            raise CommandError(f"Port {port} on {bind} is in use by another program; stop it or pass --port.")
        procs = children(bind, port)
        env = child_environment()
        stopping = False

        def request_stop(signum, _frame):
            nonlocal stopping
            if not stopping:
                log.info("received %s, stopping", signal.Signals(signum).name)
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        for child in procs:
            # A session of its own: the terminal's Ctrl-C reaches only this supervisor,
            # which then stops the children in order and waits for them.
            child.process = subprocess.Popen(  # noqa: S603 - fixed argv
                child.argv,
                env=env,
                cwd=settings.REPO_DIR,
                start_new_session=True,
                preexec_fn=die_with(os.getpid(), child.death_signal),  # noqa: PLW1509 - no threads here yet
            )
            log.info("started %s (pid %s)", child.name, child.process.pid)
        pid_file().write_text(
            json.dumps(
                [{"name": c.name, "pid": c.process.pid, "started": started_at_ticks(c.process.pid)} for c in procs]
            )
        )
        self.stdout.write(f"Vitamin is serving on http://{bind}:{port}/  (Ctrl-C stops everything)")
        self.stdout.flush()

        failed: Child | None = None
        while not stopping:
            for child in procs:
                code = child.process.poll()
                if code is not None:
                    failed = child
                    log.error("%s exited unexpectedly with code %s; stopping the others", child.name, code)
                    self.stderr.write(f"{child.name} exited unexpectedly with code {code}; stopping Vitamin.")
                    stopping = True
                    break
            time.sleep(0.2)

        self._stop_all(procs)
        if failed is not None:
            raise CommandError(f"{failed.name} died (exit code {failed.process.returncode})", returncode=1)
        self.stdout.write("Vitamin stopped.")

    def _stop_all(self, procs: list[Child]) -> None:
        for child in procs:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in procs:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %ss; killing it", child.name, GRACE_SECONDS)
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            log.info("%s stopped (exit code %s)", child.name, child.process.returncode)
        pid_file().unlink(missing_ok=True)
