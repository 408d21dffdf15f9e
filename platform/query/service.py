"""The Django side of the SQL gateway: `run_query` is the one function every query path calls (API, jobs).

    run = run_query(institution_id=..., client_id=..., sql=..., fmt="arrow", max_rows=None, versions={}, request=request)

The caller is an OAuth client (`client_id`: the API and its jobs) or a portal user (`username`: the
SQL workbench, and its jobs); either way the same steps run, and the audit events name that actor.
    response = StreamingHttpResponse(run.chunks, content_type=run.media_type)

Steps, in order (each refusal is a Refusal with a stable code, and an audit event `query.run`):

 1. statement   the datasets the SQL reads (the gateway's parser; 400 with the engine's code); a query
                that reads none is refused (400 no_dataset: the plan whose limits bound it is a
                subscription's), and so is a CTE named like any dataset of the catalog (400 cte_name_conflict)
 2. grants      `access.service.ensure(..., "query")` for each (403 with the grant's code)
 3. versions    the grant's pinned version, else the requested one, else the latest published
 4. check       every gateway check, before anything is charged (400 with the engine's code)
 5. quota       a concurrent-query slot of the institution and of each subscription, then 1 of `queries` per day;
                refused with 429 before any work is done
 6. audit       `query.start`, written before execution: if it cannot be written the query
                is refused (503 audit_unavailable), so no query runs unaudited
 7. execute     `Gateway.run` under the plan's limits with the institution's re-keying key. Sent to an idle
                worker before step 5, which prepares it (a connection, the datasets' views) meanwhile and
                computes nothing until step 5 charged it; it then runs while step 6 is written and committed
                (its rows are read only after that commit: `_Launch`); on an object
                store the versions' files are first fetched into the node's cache (datasets.cache) and
                pinned until step 8, so DuckDB reads local files only (503 dataset_unavailable if the store fails)
 8. finish      when the stream is closed (after its last byte is sent, or when the client goes away):
                rows returned and bytes scanned charged, the slots given back, `query.run` recorded
                with the outcome; the worker and cached files are given back as soon as the rows end

Steps 5 and 6 are one database transaction, and so is step 8 (no savepoints in either): a query
costs two commits besides its reads (bench/bench_query_api.py measures the whole path against raw DuckDB).

Rows and bytes are charged after the query, when they are known: the query that crosses a
daily limit completes, and the next one is refused (step 5 also checks that `rows_returned`
and `bytes_scanned` are not already over their limits). A query reading several datasets is
charged to every subscription it uses, each the full amounts.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.conf import settings
from django.db import transaction

from access import metering
from access import service as access
from access.metered import MeteredUse
from access.service import Grant
from audit.actors import by_client_id, by_username_or_system
from audit.models import Outcome
from audit.service import record
from catalog.models import Dataset, DatasetVersion
from datasets.cache import CacheError, FileCache, Pins, RemoteFile, remote_files
from datasets.query import formats
from datasets.query.bindings import DatasetBinding
from datasets.query.errors import Code, QueryError, QueryFailed, QueryRejected
from datasets.query.gateway import CheckedQuery, Gateway
from datasets.query.isolation import IsolatedGateway, Submitted
from datasets.query.limits import Limits
from datasets.query.rekey import derive_partner_key
from datasets.query.results import QueryResult
from datasets.query.sandbox import SandboxConfig
from datasets.spec import Mode
from datasets.storage import Store
from quotas.service import Lease
from vitamin.errors import status_of
from vitamin.refusals import Kind, Refusal

log = logging.getLogger("vitamin.query")

FORMATS = tuple(formats.MEDIA_TYPES)
# Step 5's charges: a query, and checks (0) that the metrics charged after the query are not already over.
_CHARGED_BEFORE = {"queries": 1, "rows_returned": 0, "bytes_scanned": 0}
# A column the spec does not describe is treated as identifying: re-keyed in open datasets, hidden in aggregate ones.
_UNDESCRIBED_ROLE = "identifier"
# The kind of refusal each engine code that is not a plain rejection (those are INVALID) is.
_FAILURE_KIND = {
    Code.TIME_LIMIT_EXCEEDED: Kind.TIMED_OUT,
    Code.MEMORY_LIMIT_EXCEEDED: Kind.TOO_LARGE,
    Code.SERVER_BUSY: Kind.UNAVAILABLE,
    Code.QUERY_CANCELLED: Kind.CONFLICT,
    Code.DATASET_UNAVAILABLE: Kind.UNAVAILABLE,
    Code.QUERY_ERROR: Kind.INVALID,
    Code.INTERNAL_ERROR: Kind.FAILED,
}


# --- the gateway of this process ----------------------------------------------------------

_gateway: tuple[tuple[SandboxConfig, int], IsolatedGateway] | None = None
_gateway_lock = threading.Lock()


def sandbox_config() -> SandboxConfig:
    """DuckDB reads local files only: the store itself, or for an object store the node's cache of it."""
    store = configured_store()
    cache = file_cache()
    return SandboxConfig(
        store_root=store.root if cache is None else str(cache.directory),
        temp_directory=str(settings.DATA_DIR / "query-tmp"),
        memory_limit_bytes=settings.QUERY_MEMORY_LIMIT_MB * 1024**2,
        threads=settings.QUERY_THREADS,
        max_temp_directory_bytes=settings.QUERY_TEMP_MAX_MB * 1024**2,
        max_concurrent_queries=settings.QUERY_POOL_SIZE,
    )


def get_gateway() -> IsolatedGateway:
    """This process's gateway, created on first use (a DuckDB instance must not cross gunicorn's fork).

    Queries run in its worker processes (datasets.query.isolation), so one query cannot take this process down.
    Rebuilt when the configuration changes (tests switch stores between cases).
    """
    global _gateway
    config = sandbox_config()
    key = (config, settings.QUERY_KILL_GRACE_SECONDS)
    with _gateway_lock:
        if _gateway is None or _gateway[0] != key:
            if _gateway is not None:
                _gateway[1].close()
            _gateway = (key, IsolatedGateway(config, kill_grace_seconds=settings.QUERY_KILL_GRACE_SECONDS))
        return _gateway[1]


def partner_key(institution_id: int) -> bytes:
    """The institution's re-keying key: HKDF-SHA256 of the pseudonym master secret, per institution id."""
    return _derived_partner_key(settings.PSEUDONYM_MASTER_KEY, int(institution_id))


# Per request, both are pure functions of settings (and an id), so they are computed once per value:
# neither decides access (the grant does, read anew each request).
@functools.lru_cache(maxsize=1024)
def _derived_partner_key(master_key: str, institution_id: int) -> bytes:
    return derive_partner_key(master_key.encode(), str(institution_id))


@functools.lru_cache(maxsize=8)
def _store(url: str) -> Store:
    return Store.from_url(url)


def configured_store() -> Store:
    """The store of VITAMIN_STORE_URL, resolved once per URL."""
    return _store(settings.STORE_URL)


def file_cache() -> FileCache | None:
    """The node's cache of the object store's files (datasets.cache); None for a local store, read in place."""
    if configured_store().is_local:
        return None
    return _file_cache(str(settings.DATA_DIR / "store-cache"), settings.STORE_CACHE_MAX_MB * 1024**2)


@functools.lru_cache(maxsize=8)
def _file_cache(directory: str, max_bytes: int) -> FileCache:
    return FileCache(directory, max_bytes)


def _pin(files: list[RemoteFile]) -> Pins:
    """The query's files present in the node's cache and pinned until it ends (cold: fetched now, before
    the query's clock starts); nothing to do for a local store. An object store that cannot deliver them is
    503 dataset_unavailable, as a missing local file is."""
    cache = file_cache()
    if cache is None or not files:
        return Pins({}, [])
    try:
        return cache.pin(configured_store(), files)
    except CacheError:
        raise QueryFailed(
            Code.DATASET_UNAVAILABLE, "A dataset file could not be read on this server right now."
        ) from None


# --- one query ---------------------------------------------------------------------------


@dataclass
class QueryRun:
    """A query that started: stream `chunks` (exactly once, then close it: `with run.chunks:`); everything
    else is known before the first byte."""

    chunks: _Finishing
    media_type: str
    max_rows: int
    versions: dict[str, int]
    result: QueryResult = field(repr=False)


@dataclass
class _Audit:
    """What every `query.run` event of one query says."""

    institution_id: int
    client_id: str
    sql: str
    fmt: str
    request: object
    username: str = ""
    started: float = field(default_factory=time.monotonic)
    versions: dict[str, int] = field(default_factory=dict)
    # Joins a query's `query.start` to its `query.run`, and names its slots (query.interrupted finds the
    # queries whose process died between the two).
    query_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if bool(self.client_id) == bool(self.username):
            raise ValueError("a query is run by an OAuth client or by a portal user: give one of client_id, username")

    @property
    def actor(self) -> dict:
        """Who ran it, for `record`: the client (API, jobs) or the portal user (workbench)."""
        if self.client_id:
            return by_client_id(self.client_id, self.institution_id)
        return by_username_or_system(self.username, self.institution_id)

    @staticmethod
    def target(slugs) -> str:
        return ",".join(f"dataset:{slug}" for slug in sorted(slugs))

    def details(self, **extra) -> dict:
        return {
            **({"client_id": self.client_id} if self.client_id else {"user": self.username}),
            "sql": self.sql,
            "sql_sha256": hashlib.sha256(self.sql.encode()).hexdigest(),
            "format": self.fmt,
            "datasets": dict(self.versions),
            "duration_ms": round((time.monotonic() - self.started) * 1000),
            "query_id": self.query_id,
            **extra,
        }

    def record(self, action: str, outcome: str, *, savepoint: bool = True, **extra) -> None:
        record(
            action,
            outcome=outcome,
            **self.actor,
            target=self.target(self.versions),
            details=self.details(**extra),
            request=self.request,
            savepoint=savepoint,
        )

    def refused(self, error: Refusal, *, failed: bool = False) -> Refusal:
        """Record a query that did not produce a result: denied (the partner's side), failed (it ran, or
        ours), or cancelled."""
        outcome = Outcome.FAILURE if failed or error.kind.ours else Outcome.DENIED
        self.record("query.run", _outcome(error.code, outcome), code=error.code, status=status_of(error))
        return error


def _outcome(code: str | None, otherwise: str) -> str:
    """A query stopped because its job was cancelled is `cancelled`, however it surfaced."""
    return "cancelled" if code == Code.QUERY_CANCELLED else otherwise


def run_query(
    *,
    institution_id: int,
    client_id: str = "",
    username: str = "",
    sql: str,
    fmt: str = "json",
    max_rows: int | None = None,
    versions: Mapping[str, int] | None = None,
    as_of: datetime | None = None,
    request=None,
    on_start: Callable[[QueryResult], None] | None = None,
) -> QueryRun:
    """Check, charge, audit and start one partner query; raises Refusal when refused.

    `on_start` gets the result as soon as the query exists, before its first batch is computed,
    so another thread can `cancel()` it (a job cancelled while a long aggregate runs).
    """
    audit = _Audit(institution_id, client_id, sql, fmt, request, username)
    gateway = get_gateway()
    use, granted, checked, files = _prepare(gateway, audit, institution_id, sql, versions, request, as_of)
    limits = _limits(granted.values(), max_rows)
    launch = _Launch(gateway, checked, partner_key(institution_id), limits, formats.READS[fmt], files)
    launch.prepare()
    held = _start(use, audit, limits, launch)
    try:
        result = launch.started()
        if on_start is not None:
            on_start(result)
        chunks = formats.stream(result, fmt)
    except QueryError as exc:
        held.release()
        launch.pins.release()
        raise audit.refused(query_error(exc), failed=isinstance(exc, QueryFailed)) from None
    except BaseException:
        held.release()
        launch.pins.release()
        raise
    pins = launch.pins
    finishing = _Finishing(chunks, result, granted.values(), held, audit, pins)
    try:
        finishing.prime()  # most failures surface here, before a response starts
    except QueryError as exc:  # already audited by `_Finishing`
        raise query_error(exc) from None
    return QueryRun(
        chunks=finishing,
        media_type=formats.MEDIA_TYPES[fmt],
        max_rows=limits.max_result_rows,
        versions=dict(audit.versions),
        result=result,
    )


def check_query(
    *,
    institution_id: int,
    client_id: str = "",
    username: str = "",
    sql: str,
    fmt: str = "json",
    versions: Mapping[str, int] | None = None,
    as_of: datetime | None = None,
    request=None,
) -> dict[str, int]:
    """Steps 1-4 without charging or running anything (a job at submit time): the versions it would read."""
    audit = _Audit(institution_id, client_id, sql, fmt, request, username)
    _prepare(get_gateway(), audit, institution_id, sql, versions, request, as_of)
    return dict(audit.versions)


def _prepare(
    gateway: Gateway,
    audit: _Audit,
    institution_id: int,
    sql: str,
    versions: Mapping[str, int] | None,
    request,
    as_of: datetime | None = None,
) -> tuple[MeteredUse, dict[str, Grant], CheckedQuery, list[RemoteFile]]:
    """Steps 1-4: the query's metered use, its grants, the query as checked (once) and the store's files it
    reads (for the node's cache); a refusal is audited (as `query.run`) and raised."""
    try:
        if audit.fmt not in FORMATS:
            raise Refusal(f"Unknown format {audit.fmt!r}; choose one of {', '.join(FORMATS)}.", code="invalid_request")
        use = _use(gateway, audit, sql)
        granted = dict(zip(use.datasets, use.grants(), strict=True))
        bindings, files = _bind(granted, dict(versions or {}), audit, as_of)
        checked = gateway.check(sql, bindings)
    except QueryError as exc:
        raise audit.refused(query_error(exc)) from None
    except Refusal as exc:
        raise audit.refused(exc) from None
    return use, granted, checked, files


def query_error(exc: QueryError) -> Refusal:
    """The refusal for an engine error: its code, its partner-safe message, INVALID for rejections."""
    kind = Kind.INVALID if isinstance(exc, QueryRejected) else _FAILURE_KIND.get(exc.code, Kind.FAILED)
    details = {"position": exc.position} if exc.position is not None else None
    return Refusal(exc.message, code=str(exc.code), kind=kind, details=details)


def _use(gateway: Gateway, audit: _Audit, sql: str) -> MeteredUse:
    """Step 1: the use of every dataset the query reads (a query must read at least one); its grants
    are step 2. Its refusals are recorded as `query.run` by the steps that catch them."""
    _check_cte_names(gateway, sql)
    names = sorted(gateway.referenced_datasets(sql))
    if not names:
        gateway.check(sql, {})  # the engine's code first: a file, the catalog or a qualified name is read
        raise QueryRejected(Code.NO_DATASET, "A query must read at least one dataset you subscribe to.")
    return MeteredUse(
        audit.institution_id,
        names,
        Mode.QUERY,
        action="query.start",
        actor=audit.actor,
        target=audit.target(names),
        request=audit.request,
        on_refused=lambda refusal, details: None,  # `_prepare` and `_start` record it as `query.run`
    )


def _check_cte_names(gateway: Gateway, sql: str) -> None:
    """No CTE may be named like a dataset of the catalog, held or not, read or not.

    The engine's `check_tables` sees only the datasets a query reads, and a CTE that shadows a
    dataset hides it from that list: `WITH card_transactions AS (...) SELECT * FROM card_transactions`
    reads no dataset at all. Only the catalog knows every dataset name.
    """
    defined = gateway.cte_names(sql)  # from the engine's cached parse of this text
    if not defined:
        return
    taken = sorted(Dataset.objects.filter(slug__in=defined).values_list("slug", flat=True))
    if taken:
        raise QueryRejected(
            Code.CTE_NAME_CONFLICT, f'The CTE name "{taken[0]}" is the name of a dataset; choose another name.'
        )


def _bind(
    granted: Mapping[str, Grant], requested: dict[str, int], audit: _Audit, as_of: datetime | None = None
) -> tuple[dict[str, DatasetBinding], list[RemoteFile]]:
    unknown = sorted(set(requested) - set(granted))
    if unknown:
        raise Refusal(
            f"`versions` names datasets the query does not read: {', '.join(unknown)}.", code="invalid_request"
        )
    if as_of is not None:
        if requested:
            raise Refusal("Give `versions` or `as_of`, not both.", code="invalid_request")
        requested = {slug: _version_at(grant, as_of) for slug, grant in granted.items()}
    store = configured_store()
    bindings, files = {}, []
    for slug, grant in granted.items():
        version = _version(grant, requested.get(slug))
        audit.versions[slug] = version.number
        bindings[slug] = binding_for(grant.dataset, version, store)
        files += remote_files(store, version.location, version.data_files)
    return bindings, files


def _version_at(grant: Grant, as_of: datetime) -> int:
    """The version current at `as_of` (`Dataset.version_at`, as Delta Sharing's timestamp resolves it)."""
    version = grant.dataset.version_at(as_of)
    if version is None:
        raise Refusal(
            f"{grant.dataset.slug} had no published version at {as_of.isoformat()}.",
            code="version_not_found",
            kind=Kind.NOT_FOUND,
        )
    return version.number


def _version(grant: Grant, requested: int | None) -> DatasetVersion:
    """The pinned version wins; else the requested one; else the latest published one."""
    slug = grant.dataset.slug
    if grant.pinned_version is not None:
        if requested is not None and requested != grant.pinned_version.number:
            raise Refusal(
                f"The subscription to {slug} is pinned to version {grant.pinned_version.number}.",
                code="version_pinned",
                kind=Kind.CONFLICT,
            )
        version = grant.pinned_version
    elif requested is not None:
        version = DatasetVersion.objects.filter(dataset=grant.dataset, number=requested).first()
        if version is None:
            raise Refusal(f"{slug} has no version {requested}.", code="version_not_found", kind=Kind.NOT_FOUND)
    else:
        version = access.version_for(grant)
        if version is None:
            raise Refusal(f"{slug} has no published version yet.", code="version_not_found", kind=Kind.NOT_FOUND)
    if version.status != DatasetVersion.Status.PUBLISHED or version.files_removed_at is not None:
        raise Refusal(f"Version {version.number} of {slug} is retired.", code="version_retired", kind=Kind.CONFLICT)
    return version


def binding_for(dataset: Dataset, version: DatasetVersion, store: Store) -> DatasetBinding:
    """The gateway's view of one published version, governed by the spec it was built from (its tier,
    column roles, entity and analysis rules), not by what the spec file says today.

    Its files are where DuckDB reads them: in a local store, or (object store) their copies in the node's
    cache, which `run_query` fetches and pins before the query runs."""
    try:
        spec = version.dataset_spec
    except ValueError:  # fail closed: a version whose rules cannot be read is not served
        log.exception("%s v%s has no readable spec", dataset.slug, version.number)
        raise Refusal(
            f"Version {version.number} of {dataset.slug} cannot be read right now.",
            code="dataset_unavailable",
            kind=Kind.UNAVAILABLE,
        ) from None
    roles = {column.name: column.role for column in spec.columns}
    return DatasetBinding(
        slug=dataset.slug,
        version=version.number,
        tier=spec.tier,
        files=tuple(_readable_paths(store, version)),
        columns={column["name"]: roles.get(column["name"], _UNDESCRIBED_ROLE) for column in version.schema},
        entity=spec.privacy.entity if spec.privacy else None,
        analysis=spec.analysis,
        size_bytes=sum(file.get("size_bytes", 0) for file in version.data_files) or version.bytes,
    )


def _readable_paths(store: Store, version: DatasetVersion) -> list[str]:
    files = remote_files(store, version.location, version.data_files)
    cache = None if store.is_local else file_cache()
    return [remote.source if cache is None else cache.path_for(remote) for remote in files]


def _limits(granted, max_rows: int | None) -> Limits:
    """The tightest plan among the subscriptions used; the request may lower the row cap, never raise it."""
    limits = Limits.tightest(grant.limits for grant in granted)
    rows = limits.max_result_rows if max_rows is None else min(limits.max_result_rows, max_rows)
    return replace(limits, max_result_rows=max(rows, 1))


def _start(use: MeteredUse, audit: _Audit, limits: Limits, launch: _Launch) -> _Slots:
    """Steps 5 and 6 in one transaction (one commit): the slots held, the query charged, `query.start` on record
    (fail closed: a query whose start cannot be recorded is refused, its charge given back). Once charged, the
    query's worker is told to run it (`_Launch.early`), which it does while the record is written and committed."""
    held = _Slots(audit.query_id)
    try:
        use.commit(
            _CHARGED_BEFORE,
            audit.details(max_rows=limits.max_result_rows),
            hold=lambda grants: held.hold(audit.institution_id, grants, limits),
            charged=launch.early,
        )
    except Refusal as exc:
        launch.abandon()
        held.release()
        if exc.code == "audit_unavailable":
            raise  # nowhere to record it
        raise audit.refused(exc) from None
    except BaseException:
        launch.abandon()
        held.release()
        raise
    return held


class _Launch:
    """Step 7's start, overlapped with steps 5 and 6.

    `prepare`, before the start's transaction, sends the query to an idle worker, held: the worker takes a
    connection and binds the datasets' views while the slots are held and the query charged, and computes
    nothing yet (an aggregate plan's group tables wait too). `early` runs inside that transaction once the
    query is charged: it tells the worker to run it, its time limit counting from then (or sends it now, to
    a worker idle by now, or again if the held one's worker is gone), so it runs while `query.start` is
    written and committed; a query refused a slot or its charge is never computed. `started`, called after that
    commit, waits for it; so no row can leave before the query is on record, and a start that is refused or
    fails to commit `abandon`s it. Neither the transaction nor the request waits for the pool here, nor for
    the object store: with no idle worker, or files to fetch into the node's cache, the query is sent after
    the commit, as its turn comes.
    """

    def __init__(self, gateway: IsolatedGateway, checked: CheckedQuery, key: bytes, limits: Limits, read, files):
        self._gateway = gateway
        self._arguments = (checked, key, limits)
        self._read = read
        self._files = files
        self._submitted: Submitted | None = None
        self._error: QueryError | None = None
        self.pins = Pins({}, [])

    def prepare(self) -> None:
        if file_cache() is None:
            self._submit(None, held=True)

    def early(self) -> None:
        if file_cache() is not None or self._error is not None:
            return
        if self._submitted is None:
            self._submit(self._read)
            return
        try:
            self._submitted.go(self._read)
        except QueryError:  # its worker is gone: the query is sent again, whole, to another one
            self.abandon()
            self._submit(self._read)

    def _submit(self, read, *, held: bool = False) -> None:
        try:
            self._submitted = self._gateway.submit(*self._arguments, read=read, wait=False, held=held)
        except QueryError as exc:  # raised by `started`, after the start is on record, like any engine error
            self._error = exc

    def started(self) -> QueryResult:
        if self._error is not None:
            raise self._error
        submitted, self._submitted = self._submitted, None
        if submitted is not None:
            return submitted.started()
        self.pins = _pin(self._files)
        return self._gateway.execute(*self._arguments, read=self._read)

    def abandon(self) -> None:
        submitted, self._submitted = self._submitted, None
        if submitted is not None:
            submitted.abandoned()


class _Slots:
    """The concurrency slots a query holds (`metering.hold_query_slots`), given back when it ends."""

    def __init__(self, holder: str = "") -> None:
        self.holder = holder  # the query's id: its institution slot is named after it
        self._leases: list[Lease] = []
        self._released = False

    def hold(self, institution_id: int, granted, limits: Limits) -> None:
        """Step 5's concurrency slots: the institution's, then each subscription's (the charge follows)."""
        self._leases = metering.hold_query_slots(institution_id, list(granted), holder=self.holder)

    def release(self) -> None:
        if not self._released:
            self._released = True
            metering.release_query_slots(self._leases)

    def release_again(self) -> None:
        """After the transaction that released them failed: release them again, on their own."""
        try:
            metering.release_query_slots(self._leases)
        except Exception:  # noqa: BLE001 - the leases lapse by themselves after the time limit
            log.exception("giving back the query slots failed")


class _Finishing:
    """The chunks, then step 8 however the stream ends (and the cached files it read unpinned).

    A stream read to its end has its rows, bytes and outcome known at once, and its query worker and cached
    files are given back then; its end is recorded (one transaction) when the stream is closed: the WSGI
    server closes a response after its last byte is on the wire, so a partner does not wait for that
    commit. A stream that fails, or is closed before its end (the client went away), is recorded at once.
    Callers in this process read it inside `with run.chunks:`; dropped unclosed, it is closed when collected.
    """

    def __init__(
        self, chunks: Iterator[bytes], result: QueryResult, granted, held: _Slots, audit: _Audit, pins: Pins
    ) -> None:
        self._chunks = chunks
        self._result = result
        self._granted = list(granted)
        self._held = held
        self._audit = audit
        self._pins = pins
        self._ended: tuple[str, str | None] | None = None  # the outcome and code, once the stream ended
        self._recorded = False
        self._first: bytes | None = None

    def prime(self) -> None:
        """Compute the first chunk now (kept for the first `next`): a query that fails at once raises here."""
        try:
            self._first = next(self)
        except StopIteration:
            self._first = None

    def __iter__(self) -> _Finishing:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._ended is not None:
            raise StopIteration
        try:
            return next(self._chunks)
        except StopIteration:
            self._end(Outcome.SUCCESS, None)
            raise
        except QueryError as exc:
            self._end(Outcome.FAILURE, str(exc.code))
            self.close()
            raise
        except BaseException:
            self._end(Outcome.ERROR, "internal_error")
            self.close()
            raise

    def _end(self, outcome: str, code: str | None) -> None:
        """The query is over: its worker and cached files given back, its outcome known (not yet recorded)."""
        try:
            self._result.close()
        finally:
            self._pins.release()
        if self._result.error is not None:
            outcome, code = Outcome.FAILURE, str(self._result.error.code)
        self._ended = (_outcome(code, outcome), code)

    def close(self) -> None:
        """Step 8, once: a stream closed before its end is `cancelled` (client_disconnected)."""
        if self._recorded:
            return
        self._recorded = True
        if self._ended is None:
            close = getattr(self._chunks, "close", None)
            try:
                if close is not None:
                    close()
            finally:
                self._end("cancelled", "client_disconnected")
        _record_end(self._result, self._granted, self._held, self._audit, *self._ended)

    def __enter__(self) -> _Finishing:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_recorded", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nothing to report to at collection time but the log
                log.exception("recording the end of a dropped query failed")


def _record_end(result: QueryResult, granted: list[Grant], held: _Slots, audit: _Audit, outcome: str, code) -> None:
    """Step 8: the use metered, the slots given back, `query.run` recorded: one transaction (one commit, no
    savepoints). The rows are already sent, so if that fails each part is done again on its own, and a
    part that still fails is logged while the others happen."""
    used = [
        (grant, metric, amount)
        for grant in granted
        for metric, amount in (("rows_returned", result.rows), ("bytes_scanned", result.bytes_scanned or 0))
    ]
    ran = {"code": code, "rows": result.rows, "truncated": result.truncated, "bytes_scanned": result.bytes_scanned}
    metered = False  # by a quota backend outside the database, which the rollback does not undo (Redis)
    try:
        with transaction.atomic():
            metering.meter(used)
            metered = not metering.charges_roll_back()
            held.release()
            audit.record("query.run", outcome, savepoint=False, **ran)
        return
    except Exception:  # noqa: BLE001 - rolled back as a whole: each part again, on its own
        log.exception("recording the end of a query failed; recording each part on its own")
    for part, run in (
        ("metering", lambda: None if metered else metering.meter(used)),  # charged once, never twice
        ("giving back the query slots", held.release_again),
        ("the audit write", lambda: audit.record("query.run", outcome, **ran)),  # query.start is on record
    ):
        try:
            run()
        except Exception:  # noqa: BLE001 - the rows are already sent
            log.exception("%s failed after a query finished", part)
