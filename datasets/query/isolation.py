"""Partner queries in worker processes with hard limits, so that one query can never take the host down.

    gateway = IsolatedGateway(config, kill_grace_seconds=2.0)
    result = gateway.run(sql, bindings, partner_key, limits)   # same surface as Gateway / QueryResult
    for chunk in formats.stream(result, "arrow"): ...

DuckDB's memory_limit does not govern every allocation (a `list_resize` or
`repeat` result is one allocation outside its buffer pool) and its interrupt is
only checked between vectors (one long `lpad` cannot be stopped). So each query
runs in a worker process (`datasets.query.worker_process`) that serves one query at a
time with the ordinary in-process `Gateway`, under limits the host enforces:

- memory: the worker caps its own address space (RLIMIT_AS) at its measured
  baseline plus `SandboxConfig.memory_limit_bytes`, the per-query ceiling (also
  DuckDB's memory_limit there). An allocation past it fails: DuckDB raises Out of
  Memory (413, the worker lives on), and a worker that cannot cope dies alone
  (413, replaced). The kernel's OOM killer has nothing to do.
- time: the worker's own watchdog interrupts at the plan's limit, as in process;
  the parent's monitor thread SIGKILLs a worker still busy `kill_grace_seconds`
  later (408, replaced).
- cancel: a control message interrupts the query in the worker; a worker still
  busy a second later is killed (409, replaced).

Checking (`check`, `referenced_datasets`) only parses, so it stays in this
process, on a small private `Gateway`. Workers are started with subprocess (not
fork: the parent has threads), lazily up to the pool size, and replaced off the
request path by a background thread. Results cross as Arrow IPC: the worker
sends `RecordBatch.serialize()` buffers and this side reads them in place with
`ipc.read_record_batch` (docs/query-internals.md, "Isolation: query worker processes", has the costs).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from datasets.query.bindings import DatasetBinding
from datasets.query.errors import Code, QueryError, QueryFailed, QueryRejected
from datasets.query.formats import Read
from datasets.query.gateway import CheckedQuery, Gateway
from datasets.query.limits import Limits
from datasets.query.results import Column
from datasets.query.sandbox import SandboxConfig
from datasets.query.worker_process import HELD, proc_status_bytes

log = logging.getLogger("vitamin.query")

DEFAULT_KILL_GRACE_SECONDS = 2.0
CANCEL_KILL_SECONDS = 1.0  # a cancelled query still running this long after the cancel is killed
START_TIMEOUT_SECONDS = 60.0
_REPO_DIR = Path(__file__).resolve().parents[2]
_CHECKER_MEMORY_BYTES = 128 * 1024**2
RUNNING_QUERIES_FILE = "running-queries"  # in the node's query temp directory: datasets.query.running

_MESSAGES = {
    Code.TIME_LIMIT_EXCEEDED: "The query ran longer than your plan's time limit.",
    Code.QUERY_CANCELLED: "The query was cancelled.",
    Code.MEMORY_LIMIT_EXCEEDED: (
        "The query needed more memory than it may use: aggregate, filter or limit before sorting or joining."
    ),
}


def _failure(code: Code) -> QueryFailed:
    return QueryFailed(code, _MESSAGES[code])


class _Worker:
    """One worker process, its two connections, and the deadline past which it is killed."""

    def __init__(self, config: SandboxConfig):
        self.temp_directory = os.path.join(config.temp_directory, f"worker-{uuid.uuid4().hex[:12]}")
        os.makedirs(config.temp_directory, exist_ok=True)
        config = replace(
            config,
            temp_directory=self.temp_directory,
            max_concurrent_queries=1,
            running_queries_file=os.path.join(config.temp_directory, RUNNING_QUERIES_FILE),
        )
        main_here, main_there = socket.socketpair()
        control_here, control_there = socket.socketpair()
        bootstrap = f"import sys; sys.path[:0] = {[str(_REPO_DIR)]!r}; "
        bootstrap += "from datasets.query.worker_process import main; main()"
        # Fewer glibc malloc arenas: less address space reserved by threads, so more of the cap is the query's.
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-I", "-c", bootstrap, str(main_there.fileno()), str(control_there.fileno())],
            pass_fds=(main_there.fileno(), control_there.fileno()),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        main_there.close()
        control_there.close()
        self.main = Connection(main_here.detach())
        self.control = Connection(control_here.detach())
        self.pid = self.process.pid
        self.info: dict[str, Any] = {}
        self.peak_rss_bytes: int | None = None  # read just before a kill
        self.kill_at: float | None = None
        self.kill_code: Code | None = None
        self.killed = False
        self._lock = threading.Lock()
        self.main.send_bytes(pickle.dumps(config))

    def wait_ready(self, timeout: float) -> None:
        if not self.main.poll(timeout):
            raise RuntimeError(f"query worker {self.pid} did not start within {timeout:.0f} s")
        info = json.loads(self.main.recv_bytes())
        if "ready" not in info:
            raise RuntimeError(f"query worker {self.pid} sent {info!r} instead of ready")
        self.info = info

    @property
    def baseline_rss_bytes(self) -> int | None:
        return self.info.get("baseline_rss_bytes")

    def alive(self) -> bool:
        return not self.killed and self.process.poll() is None

    # -- deadlines (the pool's monitor thread kills past them) ---------------------------------------

    def arm(self, at: float, code: Code) -> None:
        with self._lock:
            if self.kill_at is None or at < self.kill_at:
                self.kill_at, self.kill_code = at, code

    def disarm(self) -> None:
        with self._lock:
            self.kill_at = self.kill_code = None

    def kill_if_due(self, now: float) -> float | None:
        """Kill the worker if its deadline has passed; else when it is due (None: no deadline)."""
        with self._lock:
            if self.kill_at is None or self.killed:
                return None
            if self.kill_at > now:
                return self.kill_at
            code = self.kill_code
        log.warning("query worker %s killed: %s", self.pid, code)
        self.kill(code)
        return None

    def kill(self, code: Code | None = None) -> None:
        with self._lock:
            if self.killed:
                return
            self.killed = True
            self.kill_code = self.kill_code if code is None else code
        self.peak_rss_bytes = proc_status_bytes(self.pid, "VmHWM")
        if self.process.poll() is None:
            self.process.kill()

    # -- frames -----------------------------------------------------------------------------------

    def send(self, message: tuple) -> None:
        try:
            self.main.send_bytes(pickle.dumps(message))
        except OSError:
            raise self.death() from None

    def receive(self) -> bytes:
        try:
            return self.main.recv_bytes()
        except (EOFError, OSError):
            raise self.death() from None

    def cancel(self, query_id: int) -> float:
        """Ask the worker to stop `query_id`; it is killed if still busy CANCEL_KILL_SECONDS later (returned: when)."""
        kill_at = time.monotonic() + CANCEL_KILL_SECONDS
        self.arm(kill_at, Code.QUERY_CANCELLED)
        try:
            self.control.send_bytes(f"cancel {query_id}".encode())
        except OSError:
            pass  # gone already; the reader finds out
        return kill_at

    def death(self) -> QueryFailed:
        """The error for a query whose worker is gone: the reason it was killed, else memory."""
        with self._lock:
            code = self.kill_code if self.killed else None
            self.killed = True
        if code is None:
            try:
                status = self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                status = "killed (not exiting)"
            log.error("query worker %s died during a query (exit status %s)", self.pid, status)
            code = Code.MEMORY_LIMIT_EXCEEDED
        return _failure(code)

    def discard(self) -> None:
        self.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("query worker %s did not exit after SIGKILL", self.pid)
        self.main.close()
        self.control.close()
        shutil.rmtree(self.temp_directory, ignore_errors=True)


class WorkerPool:
    """Up to `size` workers, each serving one query at a time; killed ones are replaced in the background."""

    def __init__(self, config: SandboxConfig, size: int):
        self._config = config
        self._size = size
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._count = 0  # workers idle, busy or starting
        self._closed = False
        self._condition = threading.Condition()  # a worker became idle, or the pool closed
        # The monitor's own wake-up, on the same lock: a deadline earlier than the one it sleeps until.
        self._deadlines_changed = threading.Condition(self._condition._lock)  # type: ignore[attr-defined]
        self._monitor_wakes_at = float("inf")
        self._monitor = threading.Thread(target=self._watch, name="query-worker-monitor", daemon=True)
        self._monitor.start()

    def acquire(self, *, wait: bool = True) -> _Worker | None:
        """An idle worker (started if the pool is not full yet); 503 server_busy after queue_timeout_seconds.
        With `wait=False`: an idle worker, or None at once."""
        give_up = time.monotonic() + self._config.queue_timeout_seconds
        with self._condition:
            while True:
                if self._closed:
                    raise QueryFailed(Code.SERVER_BUSY, "The query service is shutting down; try again in a moment.")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        self._busy.add(worker)
                        return worker
                    self._count -= 1
                    log.error("query worker %s died while idle", worker.pid)
                    threading.Thread(target=worker.discard, daemon=True).start()
                if not wait:
                    return None
                if self._count < self._size:
                    self._count += 1
                    break
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise QueryFailed(Code.SERVER_BUSY, "The query service is busy; try again in a moment.")
                self._condition.wait(remaining)
        try:  # the pool's first queries start their workers; later ones find them ready
            worker = self._start()
        except Exception:
            with self._condition:
                self._count -= 1
                self._condition.notify_all()
            log.exception("starting a query worker failed")
            raise QueryFailed(Code.INTERNAL_ERROR, "The query engine failed; the error has been logged.") from None
        with self._condition:
            self._busy.add(worker)
        return worker

    def _start(self) -> _Worker:
        worker = _Worker(self._config)
        try:
            worker.wait_ready(START_TIMEOUT_SECONDS)
        except BaseException:
            worker.discard()
            raise
        return worker

    def release(self, worker: _Worker) -> None:
        """Give a worker back after its query; a killed or dead one is replaced."""
        worker.disarm()
        if not worker.alive():
            self._replace(worker)
            return
        with self._condition:
            self._busy.discard(worker)
            if self._closed:
                threading.Thread(target=worker.discard, daemon=True).start()
                return
            self._idle.append(worker)
            self._condition.notify_all()

    def _replace(self, worker: _Worker) -> None:
        with self._condition:
            self._busy.discard(worker)
        threading.Thread(target=self._replacing, args=(worker,), name="query-worker-replace", daemon=True).start()

    def _replacing(self, worker: _Worker) -> None:
        worker.discard()
        fresh = None
        if not self._closed:
            try:
                fresh = self._start()
            except Exception:  # noqa: BLE001 - the next query starts one on its own path
                log.exception("replacing a query worker failed")
        with self._condition:
            if fresh is not None and not self._closed:
                self._idle.append(fresh)
            else:
                self._count -= 1
                if fresh is not None:
                    threading.Thread(target=fresh.discard, daemon=True).start()
            self._condition.notify_all()

    def armed(self, at: float) -> None:
        """A deadline was set at `at`: the monitor re-plans its sleep if it would wake up later than that
        (the usual new query's deadline is later than one already planned, and wakes nobody)."""
        with self._condition:
            if at < self._monitor_wakes_at:
                self._deadlines_changed.notify_all()

    def _watch(self) -> None:
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                due = [at for worker in list(self._busy) if (at := worker.kill_if_due(now)) is not None]
                self._monitor_wakes_at = min(due) if due else float("inf")
                self._deadlines_changed.wait(max(0.0, min(due) - now) + 0.001 if due else None)

    def pids(self) -> list[int]:
        with self._condition:
            return [worker.pid for worker in [*self._idle, *self._busy]]

    def close(self) -> None:
        with self._condition:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            self._condition.notify_all()
            self._deadlines_changed.notify_all()  # the monitor ends
        for worker in workers:
            worker.discard()


class IsolatedGateway:
    """`Gateway`'s surface, with each query executed in a worker process (see the module docstring)."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        workers: int | None = None,
        kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS,
    ):
        self.config = config
        self.kill_grace_seconds = kill_grace_seconds
        # Checking only parses; a small private instance is enough (its reserved names are the workers' too).
        self._checker = Gateway(
            replace(
                config,
                threads=1,
                memory_limit_bytes=min(config.memory_limit_bytes, _CHECKER_MEMORY_BYTES),
                max_concurrent_queries=1,
            )
        )
        self._pool = WorkerPool(config, workers or config.max_concurrent_queries)
        self._query_ids = itertools.count(1)

    def referenced_datasets(self, sql: str) -> frozenset[str]:
        return self._checker.referenced_datasets(sql)

    def cte_names(self, sql: str) -> frozenset[str]:
        return self._checker.cte_names(sql)

    def check(self, sql: str, bindings: Mapping[str, DatasetBinding]) -> CheckedQuery:
        return self._checker.check(sql, bindings)

    def __getattr__(self, name: str) -> Any:
        # Anything else of `Gateway` that callers use (its checking half: parsing helpers) is the checker's.
        if name.startswith("__") or name in ("_checker", "_pool"):
            raise AttributeError(name)
        return getattr(self._checker, name)

    def run(
        self, sql: str, bindings: Mapping[str, DatasetBinding], partner_key: bytes, limits: Limits
    ) -> IsolatedResult:
        """`Gateway.run`: checked here, executed in a worker."""
        return self.execute(self.check(sql, bindings), partner_key, limits)

    def execute(
        self, checked: CheckedQuery, partner_key: bytes, limits: Limits, *, read: Read | None = None
    ) -> IsolatedResult:
        """`Gateway.execute` in a worker: raises QueryRejected or QueryFailed as it does, or returns the started query.

        The worker executes the checked query as it is sent (the parent is trusted); it does not check it again.
        With `read` (how the result will be read: `formats.READS`) the worker starts streaming right after
        it started the query, without waiting for the read request: one round trip less. The result must
        then be read that way (or closed).
        """
        return self.submit(checked, partner_key, limits, read=read).started()

    def submit(
        self,
        checked: CheckedQuery,
        partner_key: bytes,
        limits: Limits,
        *,
        read: Read | None = None,
        wait: bool = True,
        held: bool = False,
    ) -> Submitted | None:
        """`execute` in two halves: the query is sent to a worker now, which starts it while the caller goes
        on (`run_query` writes its audit record meanwhile); `started()` waits for it. A submitted query
        must be `started()` or `abandoned()`. With `wait=False`, None when no worker is idle right now.

        `held` (without `read`): the query waits in its worker until `Submitted.go` says how its result will
        be read. Meanwhile the worker prepares what costs nothing to compute (a connection, the datasets'
        views, the statement bound); an aggregate plan's group tables, which scan the data, wait for `go`.
        A held query's time limit counts from `go`: neither its worker's watchdog nor the kill below runs
        before, however long the caller takes to decide (a start's transaction waiting for its database)."""
        if held and read is not None:
            raise ValueError("a held query is told its read by go")
        worker = self._pool.acquire(wait=wait)
        if worker is None:
            return None
        query_id = next(self._query_ids)
        submitted = Submitted(
            self._pool,
            worker,
            query_id,
            sum(binding.size_bytes for binding in checked.bindings),
            read,
            kill_after=limits.max_query_seconds + self.kill_grace_seconds,
            held=held,
        )
        try:
            worker.send(("execute", query_id, checked, partner_key, limits, HELD if held else _read_message(read)))
        except BaseException:
            self._pool.release(worker)
            raise
        return submitted

    def worker_pids(self) -> list[int]:
        """The process ids of the workers now running (for tests and operations)."""
        return self._pool.pids()

    def close(self) -> None:
        self._pool.close()
        self._checker.close()


class Submitted:
    """A query sent to a worker, not yet known to have started (`IsolatedGateway.submit`)."""

    def __init__(
        self,
        pool: WorkerPool,
        worker: _Worker,
        query_id: int,
        unfinished_bytes: int,
        read: Read | None,
        *,
        kill_after: float,
        held: bool = False,
    ):
        self._pool = pool
        self._worker: _Worker | None = worker
        self._query_id = query_id
        self._unfinished_bytes = unfinished_bytes
        self._read = read
        self._kill_after = kill_after
        self._held = held  # waiting for `go`, its clock not started
        self.worker_pid = worker.pid
        if not held:
            self._arm(worker)

    def _arm(self, worker: _Worker) -> None:
        """The worker is killed `kill_after` seconds from now if still busy (its time limit and a grace)."""
        kill_at = time.monotonic() + self._kill_after
        worker.arm(kill_at, Code.TIME_LIMIT_EXCEEDED)
        self._pool.armed(kill_at)

    def started(self) -> IsolatedResult:
        """The running query, once the worker started it; raises its QueryRejected or QueryFailed."""
        if self._held:
            raise RuntimeError("a held query is told to go (or abandoned) before it is started")
        worker, self._worker = self._worker, None
        if worker is None:
            raise RuntimeError("a submitted query is started or abandoned once")
        try:
            reply = json.loads(worker.receive())
        except BaseException:
            self._pool.release(worker)
            raise
        if "error" in reply:
            self._pool.release(worker)
            raise _query_error(reply)
        return IsolatedResult(
            pool=self._pool,
            worker=worker,
            query_id=self._query_id,
            columns=[Column(name, type_) for name, type_ in reply["started"]],
            unfinished_bytes=self._unfinished_bytes,
            read=self._read,
            threads=reply.get("threads"),
        )

    def go(self, read: Read) -> None:
        """Let a held query run, read as `read`; its time limit counts from now, in the worker and here.
        Raises QueryFailed if the worker is gone (the query must still be `started()` or `abandoned()`)."""
        if self._worker is None or not self._held:
            raise RuntimeError("go is for a held query, once, before it is started")
        self._held = False
        self._arm(self._worker)
        self._worker.send(("read", *_read_message(read)))
        self._read = read

    def abandoned(self) -> None:
        """Stop it unread (its start could not be recorded), and give the worker back."""
        if self._worker is None:
            return
        if self._held:  # never told to go: told to close instead, whatever it prepared
            self._closed_unrun()
            return
        try:
            result = self.started()
        except QueryError:
            return
        result.close()

    def _closed_unrun(self) -> None:
        worker, self._worker = self._worker, None
        self._held = False
        self._arm(worker)
        try:
            worker.send(("close",))
            while True:  # its error (a held query that failed to prepare), or its start and its end
                message = json.loads(worker.receive())
                if "error" in message or "end" in message:
                    break
        except QueryFailed:
            pass  # the worker is gone: it is replaced
        finally:
            self._pool.release(worker)


class IsolatedResult:
    """`QueryResult`'s surface for a query running in a worker: read it once, close it, or cancel it."""

    def __init__(
        self,
        *,
        pool: WorkerPool,
        worker: _Worker,
        query_id: int,
        columns: list[Column],
        unfinished_bytes: int,
        read: Read | None = None,
        threads: int | None = None,
    ):
        self.columns = columns
        self.threads = threads  # the DuckDB threads the worker runs it on (fewer while the node is busy)
        self.schema: pa.Schema | None = None
        self.rows = 0
        self.truncated = False
        self.bytes_scanned: int | None = None
        self.error: QueryFailed | None = None
        self.peak_rss_bytes: int | None = None  # the worker's peak resident memory, once the query ended
        self.baseline_rss_bytes = worker.baseline_rss_bytes  # ... and what it was before any query
        self.worker_pid = worker.pid
        self._pool = pool
        self._worker: _Worker | None = worker
        self._query_id = query_id
        self._unfinished_bytes = unfinished_bytes
        self._lock = threading.Lock()
        self._started = False
        self._sent_read = read  # the read the worker was told with the query: it is streaming already

    # -- reading ----------------------------------------------------------------------------------

    def record_batches(self, *, nested_as_text: bool = False) -> Iterator[pa.RecordBatch]:
        return self._open("arrow", nested_as_text, "")

    def arrow_ipc_messages(self) -> Iterator[bytes]:
        """The result as the Arrow IPC messages the worker encoded (the schema's, then one per batch),
        to forward as an Arrow stream without decoding and encoding every batch again here."""
        return self._open("arrow", False, "", as_messages=True)

    def json_rows(self, prefix: str = "") -> Iterator[pa.Array]:
        return (batch.column(0) for batch in self._open("json", False, prefix))

    def _open(self, kind: str, nested_as_text: bool, prefix: str, *, as_messages: bool = False) -> Iterator[Any]:
        if self._started or self._worker is None:
            raise RuntimeError("a query result can be read only once")
        self._started = True
        worker = self._worker
        try:
            if self._sent_read is None:
                worker.send(("read", kind, nested_as_text, prefix))
            elif self._sent_read != Read(kind, nested_as_text, prefix):
                raise RuntimeError(f"the result was started for {self._sent_read}, not read as {kind}")
            frame = worker.receive()
            if frame[:1] == b"{":  # the query failed before its first batch
                error = _query_error(json.loads(frame))
                self._end(json.loads(worker.receive()))
                raise error
        except QueryFailed:
            self._lost()
            raise
        schema = ipc.read_schema(pa.py_buffer(frame))
        if kind == "arrow":
            self.schema = schema
        return self._iterate(worker, schema, first=frame if as_messages else None)

    def _iterate(self, worker: _Worker, schema: pa.Schema, *, first: bytes | None) -> Iterator[Any]:
        """Each batch, or (when `first`, the schema's message, is given) each message as it came."""
        try:
            if first is not None:
                yield first
            while True:
                frame = worker.receive()
                if frame[:1] == b"{":
                    break
                batch = ipc.read_record_batch(pa.py_buffer(frame), schema)  # in place: counts the rows
                self.rows += batch.num_rows
                yield batch if first is None else frame
            message = json.loads(frame)
            if "error" in message:
                error = _query_error(message)
                self._end(json.loads(worker.receive()))
                raise error
            self._end(message)
        except QueryFailed:
            self._lost()
            raise
        finally:
            self.close()  # stopped early (the client went away): stop the query, keep or replace the worker

    # -- ending -----------------------------------------------------------------------------------

    def _end(self, trailer: dict) -> None:
        """The worker finished the query and sent its trailer: record it and give the worker back."""
        self.truncated = bool(trailer.get("truncated"))
        scanned = trailer.get("bytes_scanned")
        self.bytes_scanned = int(scanned) if scanned is not None else self._unfinished_bytes
        self.peak_rss_bytes = trailer.get("peak_rss_bytes")
        self._give_back()

    def _lost(self) -> None:
        """The query ended without a trailer (the worker died or was killed): it is charged in full."""
        with self._lock:
            worker = self._worker
        if worker is None:
            return
        self.bytes_scanned = self._unfinished_bytes
        self.peak_rss_bytes = worker.peak_rss_bytes
        self._give_back()

    def _give_back(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._pool.release(worker)

    def close(self) -> None:
        """Stop the query (if still running) and give the worker back, or have it replaced."""
        with self._lock:
            worker = self._worker
        if worker is None:
            return
        try:
            if not self._started and self._sent_read is None:
                self._started = True
                worker.send(("close",))
            else:
                self._started = True
                # Streaming stops at the next batch; killed if it does not.
                self._pool.armed(worker.cancel(self._query_id))
            while True:  # what the worker had sent already, up to its trailer
                frame = worker.receive()
                if frame[:1] == b"{" and "end" in (message := json.loads(frame)):
                    break
        except QueryFailed:
            self._lost()
            return
        self._end(message)  # the worker charges a query it did not finish in full, as in process

    def cancel(self) -> None:
        """Stop the query from another thread; the reader gets `query_cancelled` (killed if it takes over ~1 s)."""
        with self._lock:
            if self._worker is not None:
                self._pool.armed(self._worker.cancel(self._query_id))

    def __enter__(self) -> IsolatedResult:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_worker", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001, S110 - nothing to report to at collection time
                pass


def _read_message(read: Read | None) -> tuple | None:
    return None if read is None else (read.kind, read.nested_as_text, read.prefix)


def _query_error(message: dict) -> QueryError:
    """The worker's error as the exception `Gateway.run` would have raised (unknown codes become internal)."""
    try:
        code = Code(message["error"])
    except ValueError:
        code = Code.INTERNAL_ERROR
    kind = QueryRejected if message.get("rejected") else QueryFailed
    return kind(code, str(message.get("message") or "The query failed."), message.get("position"))
