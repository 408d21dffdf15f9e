"""Private PostgreSQL and Redis servers for tests that start, stop or restart them: never the shared ones.

The machine's own PostgreSQL (127.0.0.1:5432) and Redis (6379) serve every test run and every helper
at once; a test that must own its servers (a topology of several processes, a restart under load)
starts its own here instead, on free ports of 127.0.0.1, with its data in a temp directory:

    with private_postgres() as pg, private_redis() as redis:
        url = pg.create_database("vitamin")        # postgres://postgres@127.0.0.1:<port>/vitamin
        redis.url(1)                                # redis://127.0.0.1:<port>/1
        pg.restart(); redis.restart()               # same port, same data: what a fault test needs

PostgreSQL is an `initdb` cluster (trust authentication, fsync off: a test's data need not survive a
power cut) run by `pg_ctl`; as root both run as the `postgres` user, since PostgreSQL refuses to run
as root. Redis keeps nothing on disk (`--save "" --appendonly no`), so a restart empties it, as a
Redis without persistence does. Without the binaries the fixtures skip (fail under
VITAMIN_TEST_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testenv import REQUIRE_SERVICES

START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin/ (Debian keeps initdb and pg_ctl out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test's own: `stop`, `start` and `restart` keep its port and data."""

    bin_dir: Path
    directory: Path  # holds data/, the socket and server.log; owned by the server's user
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *argv: str, timeout: float = 60) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            _as_postgres_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *argv]),
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT_SECONDS)), "-l", str(self.directory / "server.log"),
                     "-o", options)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session and stops; `immediate` is a crash (recovery at the next start)."""
        self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database).replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("initdb (apt-get install postgresql)")
    # Not under pytest's tmp_path: it is private to root, and the server runs as `postgres`.
    directory = Path(tempfile.mkdtemp(prefix="vitamin-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    server = PrivatePostgres(bin_dir, directory, free_port())
    try:
        subprocess.run(  # noqa: S603 - fixed argv
            _as_postgres_user([str(bin_dir / "initdb"), "-D", str(server.data), "-U", "postgres", "-A", "trust",
                               "-E", "UTF8", "--no-sync"]),
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PrivateRedis:
    """A redis-server of this test's own, without persistence: `restart` keeps the port, not the data."""

    directory: Path
    port: int
    process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        raise FileNotFoundError("redis-server (apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="vitamin-redis-"))
    server = PrivateRedis(directory, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _serve(manager_factory, what: str) -> Iterator:
    """A fixture's body: the server the context manager starts, stopped after; skips (or fails under
    VITAMIN_TEST_REQUIRE_SERVICES=1) when it cannot start."""
    manager = manager_factory()
    try:
        server = manager.__enter__()
    except (FileNotFoundError, RuntimeError, subprocess.SubprocessError) as exc:
        message = f"a private {what} could not start: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster for the module's tests (see the module docstring)."""
    yield from _serve(private_postgres, "PostgreSQL")


@pytest.fixture(scope="module")
def own_redis() -> Iterator[PrivateRedis]:
    """A private redis-server for the module's tests (see the module docstring)."""
    yield from _serve(private_redis, "Redis")
