"""Serve Vitamin on one machine: gunicorn (portal + API), a Celery worker and Celery beat.

One foreground process supervises the three children. Ctrl-C or SIGTERM stops
every child (SIGTERM, then SIGKILL after a grace period). A child that exits
on its own is reported, the others are stopped, and the command exits non-zero,
so a broken worker never goes unnoticed behind a healthy web server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

log = logging.getLogger("vitamin.run")
GRACE_SECONDS = 15


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None


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
        ),
    ]


class Command(BaseCommand):
    help = "Serve the portal and API with gunicorn, plus a Celery worker and beat, supervised in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1", help="Address gunicorn listens on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=settings.PORT, help="Port (default: the PORT setting).")

    def handle(self, *args, bind: str, port: int, **options):
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
            child.process = subprocess.Popen(child.argv, env=env, cwd=settings.REPO_DIR, start_new_session=True)  # noqa: S603 - fixed argv
            log.info("started %s (pid %s)", child.name, child.process.pid)
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
