"""A query worker process: one in-process `Gateway` under a hard address-space limit, serving one query at a time.

Started by `datasets.query.isolation` (never imported by Django code paths; nothing here
imports Django) as

    python -I -c "<put the repo on sys.path>; from datasets.query.worker_process import main; main()" MAIN_FD CONTROL_FD

and spoken to over two socket pairs, with `multiprocessing.connection` framing:

- MAIN (one request at a time, from the parent's reading thread). The parent sends
  pickles: the `SandboxConfig` once, then per query `("execute", id, checked_query,
  partner_key, limits, read)` (checked by the parent, not again here), then, unless `read`
  (`(kind, nested_as_text, prefix)`) came with it, `("read", kind, nested_as_text, prefix)` or
  `("close",)`. A `read` of `HELD` is a query prepared before it was charged: it computes nothing
  until its read comes (an aggregate plan, whose group tables scan the data, is not even started),
  and its time limit counts from then; closed instead, it answers its start (if any) and its end. The worker answers in JSON (`{"started": columns}`, `{"error": ...}`,
  `{"end": ...}`) and, while reading, Arrow IPC messages: the schema, then one
  `RecordBatch.serialize()` per batch. Arrow messages start with 0xFFFFFFFF and
  JSON with "{", so the frames need no tag (and no copy to add one).
- CONTROL (any thread of the parent): `cancel <id>`. A thread here interrupts that
  query if it is still the current one, and streaming stops at the next batch.

Each query counts itself among the node's running queries (`datasets.query.running`) while it
runs, and runs on the configured threads while the node has the cores for them, else on a second,
one-thread DuckDB instance kept for that (a locked configuration cannot change its threads).

The worker sends JSON rather than pickles so the parent never unpickles what a
process running partner SQL wrote. It sets RLIMIT_AS itself once its libraries
are loaded and warmed up: its measured baseline plus `memory_limit_bytes` (the
per-query ceiling, also DuckDB's own memory_limit). An allocation past it fails:
DuckDB turns that into an Out of Memory error (a 413 and the worker lives on);
anything that cannot cope dies, alone, and the parent replaces it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import resource
import sys
import threading
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - loaded before RLIMIT_AS is set: a lazy import under the cap can fail to map

from datasets.query.errors import Code, QueryError, QueryFailed
from datasets.query.gateway import CheckedQuery, Gateway
from datasets.query.limits import Limits
from datasets.query.running import RunningQueries, node_cores, threads_for
from datasets.query.sandbox import SandboxConfig

log = logging.getLogger("vitamin.query.worker")

# Bytes of address space a thread started after the limit is set may still need (stacks, malloc arenas).
ADDRESS_SPACE_SLACK_BYTES = 64 * 1024**2
_WARM_UP_KEY = bytes(range(32))
HELD = "held"  # the `read` of a query sent before it was charged: it waits for its read (or close)


def proc_status_bytes(pid: int | str, field: str) -> int | None:
    """A size field of /proc/PID/status (VmSize, VmRSS, VmHWM), in bytes; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Worker:
    """The serving loop: one query at a time on MAIN, cancels on CONTROL."""

    def __init__(self, main: Connection, control: Connection):
        self._main = main
        self._control = control
        self._lock = threading.Lock()
        self._query_id: int | None = None
        self._result: Any = None
        self._stopped = False  # the current query was cancelled: stream nothing more

    # -- start-up ---------------------------------------------------------------------------------

    def start(self) -> None:
        config: SandboxConfig = pickle.loads(self._main.recv_bytes())  # noqa: S301 - the parent is trusted
        self._threads = config.threads
        self._gateway = Gateway(config)
        # While the node is busy a query runs on one thread (datasets.query.running): a second DuckDB
        # instance, since a locked configuration cannot change its threads.
        self._running = self._serial = None
        if config.running_queries_file is not None:
            try:
                self._running = RunningQueries(config.running_queries_file)
            except OSError as exc:  # e.g. a data directory on a file system without locks: count nothing
                log.warning(
                    "query worker: cannot count the node's running queries (%s); every query gets %s threads",
                    exc,
                    config.threads,
                )
            self._cores = node_cores()
            if self._running is not None and config.threads > 1:
                self._serial = Gateway(replace(config, threads=1))
        threading.Thread(target=self._serve_control, name="query-worker-control", daemon=True).start()
        self._warm_up()
        baseline = proc_status_bytes("self", "VmSize") or 0
        limit = baseline + config.memory_limit_bytes + ADDRESS_SPACE_SLACK_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        self._send_json(
            {
                "ready": os.getpid(),
                "baseline_rss_bytes": proc_status_bytes("self", "VmRSS"),
                "baseline_address_space_bytes": baseline,
                "address_space_limit_bytes": limit,
            }
        )

    def _warm_up(self) -> None:
        """Start the threads a query starts (watchdog, DuckDB's), so the baseline measured includes them."""
        for gateway in filter(None, (self._gateway, self._serial)):
            try:
                result = gateway.run("SELECT 1 AS x", {}, _WARM_UP_KEY, Limits(max_query_seconds=10, max_result_rows=1))
                for _ in result.record_batches():
                    pass
                result.close()
            except QueryError:
                pass  # a gateway that refuses a query without datasets still started what it needs

    # -- serving ----------------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                message = pickle.loads(self._main.recv_bytes())  # noqa: S301 - the parent is trusted
            except EOFError:
                return  # the parent went away
            if message[0] == "execute":
                self._execute(*message[1:])

    def _execute(
        self, query_id: int, checked: CheckedQuery, partner_key: bytes, limits: Limits, read: tuple | str | None
    ) -> None:
        with self._lock:
            self._query_id, self._stopped = query_id, False
        held = read == HELD
        if held and checked.prepare:  # its plan's first statements compute: wait until it is told to run
            request = pickle.loads(self._main.recv_bytes())  # noqa: S301
            if request[0] != "read":
                with self._lock:
                    self._query_id = None
                self._send_json({"end": True, "rows": 0, "truncated": False, "bytes_scanned": 0})
                return
            read, held = request[1:], False
        gateway, threads = self._gateway, self._threads
        if self._running is not None:
            try:
                running = self._running.enter()
            except OSError as exc:  # the query runs all the same, uncounted, on the configured threads
                log.warning("query worker: cannot count the node's running queries (%s)", exc)
            else:
                if self._serial is not None and threads_for(running, configured=threads, cores=self._cores) == 1:
                    gateway, threads = self._serial, 1
        try:
            result = gateway.execute(checked, partner_key, limits)
        except QueryError as exc:
            self._end_query()
            self._send_error(exc)
            return
        except Exception:  # noqa: BLE001 - a bug here must not end the worker; the partner gets internal_error
            log.exception("query worker: run failed")
            self._end_query()
            self._send_error(QueryFailed(Code.INTERNAL_ERROR, "The query engine failed; the error has been logged."))
            return
        with self._lock:
            self._result = result
            if self._stopped:
                result.cancel()
        try:
            self._send_json({"started": [[column.name, column.type] for column in result.columns], "threads": threads})
            # The read sent with the query (the parent reads it that way), else the parent's next request.
            if read is not None and not held:
                self._stream(result, *read)
            else:
                request = pickle.loads(self._main.recv_bytes())  # noqa: S301
                if request[0] == "read":
                    if held:  # prepared before it was charged: its time limit counts from now
                        result.restart_clock()
                    self._stream(result, *request[1:])
        finally:
            result.close()
            self._end_query()
        self._send_json(
            {
                "end": True,
                "rows": result.rows,
                "truncated": result.truncated,
                "bytes_scanned": result.bytes_scanned,
                "peak_rss_bytes": proc_status_bytes("self", "VmHWM"),
            }
        )

    def _stream(self, result: Any, kind: str, nested_as_text: bool, prefix: str) -> None:
        """The batches of `result`, each as one frame; an error ends the stream as a JSON frame."""
        try:
            if kind == "json":
                batches = (pa.RecordBatch.from_arrays([texts], names=["json"]) for texts in result.json_rows(prefix))
                first = next(batches, None)
                schema = first.schema if first is not None else pa.schema([("json", pa.string())])
            else:
                batches = iter(result.record_batches(nested_as_text=nested_as_text))
                first = next(batches, None)
                schema = result.schema
            plain = _without_dictionaries(schema)
            self._main.send_bytes(plain.serialize())
            batch = first
            while batch is not None:
                if self._stopped:
                    batches.close()
                    raise QueryFailed(Code.QUERY_CANCELLED, "The query was cancelled.")
                if plain is not schema:
                    batch = batch.cast(plain)
                self._main.send_bytes(batch.serialize())
                batch = next(batches, None)
        except QueryError as exc:
            self._send_error(exc)
        except (BrokenPipeError, ConnectionError):
            raise
        except Exception:  # noqa: BLE001 - see _run
            log.exception("query worker: streaming failed")
            self._send_error(QueryFailed(Code.INTERNAL_ERROR, "The query engine failed; the error has been logged."))

    def _end_query(self) -> None:
        with self._lock:
            self._query_id, self._result = None, None
        if self._running is not None:
            self._running.leave()

    # -- control ----------------------------------------------------------------------------------

    def _serve_control(self) -> None:
        while True:
            try:
                command, _, argument = self._control.recv_bytes().decode().partition(" ")
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: nobody will read what the current query produces
            if command == "cancel":
                with self._lock:
                    if self._query_id == int(argument):
                        self._stopped = True
                        if self._result is not None:
                            self._result.cancel()

    # -- frames -----------------------------------------------------------------------------------

    def _send_json(self, message: dict) -> None:
        self._main.send_bytes(json.dumps(message).encode())

    def _send_error(self, exc: QueryError) -> None:
        self._send_json(
            {
                "error": str(exc.code),
                "rejected": not isinstance(exc, QueryFailed),
                "message": exc.message,
                "position": exc.position,
            }
        )


def _without_dictionaries(schema: pa.Schema) -> pa.Schema:
    """`schema` with dictionary-encoded fields (DuckDB ENUMs) as their value type: one batch can then
    be read without the dictionaries, which `RecordBatch.serialize()` leaves out. `schema` itself if none."""

    def plain(type_: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(type_):
            return plain(type_.value_type)
        if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
            value = plain(type_.value_type)
            if pa.types.is_fixed_size_list(type_):
                return pa.list_(type_.value_field.with_type(value), type_.list_size)
            maker = pa.large_list if pa.types.is_large_list(type_) else pa.list_
            return maker(type_.value_field.with_type(value))
        if pa.types.is_struct(type_):
            return pa.struct([type_.field(i).with_type(plain(type_.field(i).type)) for i in range(type_.num_fields)])
        if pa.types.is_map(type_):
            return pa.map_(plain(type_.key_type), plain(type_.item_type))
        return type_

    fields = [field.with_type(plain(field.type)) for field in schema]
    if all(new.type == old.type for new, old in zip(fields, schema, strict=True)):
        return schema
    return pa.schema(fields, metadata=schema.metadata)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s query-worker[%(process)d] %(message)s")
    main_fd, control_fd = int(sys.argv[1]), int(sys.argv[2])
    worker = Worker(Connection(main_fd), Connection(control_fd))
    worker.start()
    worker.serve()


if __name__ == "__main__":
    main()
