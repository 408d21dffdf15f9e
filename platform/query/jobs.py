"""Query jobs: submit (checked up front), run by a Celery worker through `run_query`, cancel, download.

    job = submit_job(institution_id=..., client_id=..., sql=..., fmt="parquet", request=request)
    execute_job(job.pk)        # in the worker (query.tasks.run_query_job)
    path = result_file(job)    # the finished result, until job.expires_at

A job runs the same `query.service.run_query` as the HTTP API, so grants, quotas,
limits and audit are the same; the grant is checked again when the worker starts
it, so a subscription revoked while the job waits fails it (`subscription_revoked`).
The result is written to <VITAMIN_DATA_DIR>/job-results/<id>.<ext> (first as
`.part`, renamed when complete) and can be downloaded until `expires_at`
(VITAMIN_JOB_RESULT_SECONDS): with the bearer token, or through a signed link
(`result_link`) that needs none and lapses after RESULT_LINK_SECONDS. Every
download goes through `open_result`: the grants of the datasets the job read
are checked again, the file's size is charged to `bytes_downloaded`, and the
download is audited (`query.job_download`).

With an object store (an s3:// VITAMIN_STORE_URL) the finished file is uploaded to
`<store>/job-results/<id>.<ext>` and the local copy deleted, so any web node serves what
any worker wrote; a download is then checked and charged (the whole file) as above and
answered with a redirect to a pre-signed URL of the store (`presigned_result`), valid
VITAMIN_SHARING_URL_SECONDS at most and never past the result's expiry.

Cancelling: a queued job never starts (the worker only takes a job still
`queued`). While a job runs, a thread of the worker writes its progress about
once a second and, when it finds the job cancelled, interrupts the query at
once, even in the middle of a long aggregate; the worker deletes the partial
file. A cancel after the last check is caught when the job is marked done.

A job the concurrency limits refuse (every query slot of the subscription or
the institution busy) goes back to the queue and is retried with a growing
delay, until JOB_QUEUE_SECONDS after it was submitted; any other refusal (a
daily limit, a revoked grant) fails it with that error's code.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from uuid import UUID

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from access import service as access
from access.metered import MeteredUse
from audit.actors import by_client_id, by_username_or_system
from audit.service import record
from datasets.query.errors import QueryError
from datasets.query.limits import CONCURRENT_QUERIES
from datasets.query.results import QueryResult
from datasets.spec import Mode
from datasets.storage import Store
from oauth.models import Client
from query.models import QueryJob
from query.service import check_query, configured_store, get_gateway, run_query
from vitamin.background import every
from vitamin.queueing import QueueUnavailable, send_task
from vitamin.ranges import ByteRange
from vitamin.refusals import Kind, Refusal

RUN_JOB_TASK = "query.run_query_job"  # query.tasks.run_query_job

log = logging.getLogger("vitamin.query")

State = QueryJob.State
FILE_EXTENSIONS = {"json": "json", "csv": "csv", "arrow": "arrows", "parquet": "parquet"}
CANCEL_CHECK_SECONDS = 1.0
# A refused slot's Retry-After is when the oldest lease would lapse at the latest; slots usually
# free sooner, so a job refused one tries again after these (doubling) delays instead.
SLOT_RETRY_SECONDS = 5
MAX_SLOT_RETRY_SECONDS = 60


# A signed result link is a bearer credential in a URL (it ends up in proxy logs): short-lived.
RESULT_LINK_SECONDS = 900
_LINK_SALT = "vitamin.query.job-result"

STALE_RUNNING = timedelta(hours=6)  # longer than any plan's time limit: such a job's worker is gone
# A running job's worker writes its heartbeat every CANCEL_CHECK_SECONDS; one silent this long has died.
LOST_AFTER = timedelta(seconds=30)


def results_dir() -> Path:
    return Path(settings.DATA_DIR) / "job-results"


def results_store() -> Store | None:
    """The object store finished results go to; None when results stay in results_dir() (a local store)."""
    target = configured_store()
    return None if target.is_local else target


def _stored_path(target: Store, name: str) -> str:
    return target.path("job-results", name)


def submit_job(
    *,
    institution_id: int,
    client_id: str = "",
    username: str = "",
    sql: str,
    fmt: str,
    max_rows: int | None = None,
    versions: Mapping[str, int] | None = None,
    as_of: datetime | None = None,
    request=None,
) -> QueryJob:
    """Check the query now (grants, versions, every gateway check) and queue it; raises Refusal when refused.
    An `as_of` time is resolved now into the versions the job will read. The job runs for its OAuth client
    (the API) or its portal user (the workbench): one of `client_id`, `username`."""
    resolved = check_query(
        institution_id=institution_id,
        client_id=client_id,
        username=username,
        sql=sql,
        fmt=fmt,
        versions=versions,
        as_of=as_of,
        request=request,
    )
    if as_of is not None:
        versions = resolved
    with transaction.atomic():
        job = QueryJob.objects.create(
            institution_id=institution_id,
            client_id=client_id,
            username=username,
            sql=sql,
            format=fmt,
            max_rows=max_rows,
            versions=dict(versions or {}),
        )
        record(
            "query.job_submit",
            **job_actor(job),
            target=f"query_job:{job.pk}",
            details={"sql": sql, "format": fmt},
            request=request,
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def job_actor(job: QueryJob) -> dict:
    """Who a job acts for, in its audit events: its OAuth client, or the portal user who submitted it."""
    if job.client_id:
        return by_client_id(job.client_id, job.institution_id)
    return by_username_or_system(job.username, job.institution_id)


def _enqueue(job_id: UUID, *, countdown_seconds: int | None = None) -> None:
    """Send the job's task (by name: the task module imports this one, never the reverse). A job whose message
    the broker does not take is failed with `queue_unavailable`, never left queued with nothing on its way to a
    worker; the QueueUnavailable goes on to the caller (the API answers 503 with Retry-After)."""
    try:
        send_task(RUN_JOB_TASK, args=(str(job_id),), countdown=countdown_seconds)
    except QueueUnavailable as exc:
        QueryJob.objects.filter(pk=job_id, state=State.QUEUED).update(
            state=State.FAILED, error_code=exc.code, error_message=exc.message, finished_at=timezone.now()
        )
        raise


def execute_job(job_id: UUID | str) -> None:
    """Run a queued job to its end (the worker's side). A job no longer queued (cancelled, already taken) is left alone.

    One run of a job is one execution, known by its `started_at`: every later write of this run names it, so
    a run that lost the job (its heartbeat stopped, `requeue_lost_jobs` queued the job again, another worker
    took it) can change nothing, stops its query at its next check, and writes files of its own names."""
    started = timezone.now()
    if not QueryJob.objects.filter(pk=job_id, state=State.QUEUED).update(
        state=State.RUNNING, started_at=started, heartbeat_at=started
    ):
        return
    job = QueryJob.objects.get(pk=job_id)
    name = f"{job.pk}-{started.strftime('%Y%m%dT%H%M%S%f')}.{FILE_EXTENSIONS[job.format]}"
    results_dir().mkdir(parents=True, exist_ok=True)
    partial = results_dir() / f"{name}.part"
    watch = _JobWatch(job.pk, started)
    with every(CANCEL_CHECK_SECONDS, watch.check, name=f"job-watch-{job.pk}"):
        try:
            run = run_query(
                institution_id=job.institution_id,
                client_id=job.client_id,
                username=job.username,
                sql=job.sql,
                fmt=job.format,
                max_rows=job.max_rows,
                versions=job.versions,
                on_start=watch.watch,
            )
            with run.chunks as chunks:
                _write(chunks, partial)
        except Refusal as exc:
            if not watch.cancelled and not _requeued(job, exc):
                _fail(job, exc.code, exc.message)
            return
        except QueryError as exc:
            partial.unlink(missing_ok=True)
            if not watch.cancelled:
                _fail(job, str(exc.code), exc.message)
            return
        except Exception:  # noqa: BLE001 - a worker must leave the job in a final state, whatever happened
            log.exception("query job %s failed", job.pk)
            partial.unlink(missing_ok=True)
            _fail(job, "internal_error", "The job failed on the server.")
            return
    if watch.cancelled:
        partial.unlink(missing_ok=True)
        return
    if run.result.error is not None:  # JSON ends with an error member instead of raising
        partial.unlink(missing_ok=True)
        _fail(job, str(run.result.error.code), run.result.error.message)
        return
    final = results_dir() / name
    partial.rename(final)
    size = final.stat().st_size
    try:
        _upload(final, name)
    except OSError:
        log.exception("storing the result of query job %s failed", job.pk)
        final.unlink(missing_ok=True)
        _fail(job, "store_unavailable", "The job's result could not be stored; submit it again.")
        return
    now = timezone.now()
    finished = _this_run(job).update(
        state=State.SUCCEEDED,
        rows_written=run.result.rows,
        truncated=run.result.truncated,
        bytes_scanned=run.result.bytes_scanned,
        result_path=name,
        result_bytes=size,
        datasets=run.versions,
        finished_at=now,
        expires_at=now + timedelta(seconds=settings.JOB_RESULT_SECONDS),
    )
    if not finished:  # cancelled (or lost) while the last batch was written
        _delete_result(name)


def _upload(final: Path, name: str) -> None:
    """With an object store: the finished file there (an S3 object appears whole when its upload completes),
    the local copy gone."""
    target = results_store()
    if target is None:
        return
    target.fs.create_dir(target.path("job-results"), recursive=True)
    with final.open("rb") as source, target.fs.open_output_stream(_stored_path(target, name)) as out:
        while chunk := source.read(4 * 1024 * 1024):
            out.write(chunk)
    final.unlink()


def _delete_result(name: str) -> None:
    (results_dir() / name).unlink(missing_ok=True)
    target = results_store()
    if target is not None:
        target.delete_file(_stored_path(target, name))


def _write(chunks, partial: Path) -> None:
    """Write the result to `partial`; the query stops (and is audited) if this ends early."""
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
    finally:
        chunks.close()


class _JobWatch:
    """While a job runs (`every` CANCEL_CHECK_SECONDS): its progress written, and once it was
    cancelled, its query interrupted.

    `watch` hands it the query as soon as it starts. Once cancelled, every check interrupts
    again: an interrupt that reached DuckDB just before it started executing is ignored.
    """

    def __init__(self, job_id: UUID, started):
        self.job_id = job_id
        self.started = started  # this execution's
        self.cancelled = False
        self._result: QueryResult | None = None
        self._lock = threading.Lock()

    def watch(self, result: QueryResult) -> None:
        with self._lock:
            self._result = result
            if self.cancelled:
                result.cancel()

    def check(self) -> None:
        """Progress and heartbeat in one statement; a job cancelled, or no longer this execution's, stops."""
        if not self.cancelled:
            rows = self._result.rows if self._result is not None else 0
            running = QueryJob.objects.filter(pk=self.job_id, state=State.RUNNING, started_at=self.started)
            if running.update(rows_written=rows, heartbeat_at=timezone.now()):
                return
            if QueryJob.objects.filter(pk=self.job_id, state__in=[State.SUCCEEDED, State.FAILED]).exists():
                return  # the worker itself just ended it
        with self._lock:
            self.cancelled = True
            if self._result is not None:
                self._result.cancel()


def _requeued(job: QueryJob, error: Refusal) -> bool:
    """Put a job the concurrency limit refused back in the queue, until JOB_QUEUE_SECONDS after submission.

    Retries back off (5, 10, 20, 40, then every 60 s), so jobs waiting behind busy slots do not
    poll them, or fill the audit log with refusals, more than a few dozen times an hour.
    """
    if error.kind is not Kind.LIMIT_REACHED or (error.details or {}).get("metric") != CONCURRENT_QUERIES:
        return False
    delay = min(SLOT_RETRY_SECONDS * 2**job.attempts, MAX_SLOT_RETRY_SECONDS)
    if timezone.now() + timedelta(seconds=delay) > job.created_at + timedelta(seconds=settings.JOB_QUEUE_SECONDS):
        return False
    requeued = _this_run(job).update(state=State.QUEUED, started_at=None, heartbeat_at=None, attempts=job.attempts + 1)
    if requeued:  # else cancelled meanwhile: nothing to retry, nothing to fail
        transaction.on_commit(lambda: _enqueue(job.pk, countdown_seconds=delay))
    return True


def _this_run(job: QueryJob):
    """The job, while this execution (its `started_at`) still runs it."""
    return QueryJob.objects.filter(pk=job.pk, state=State.RUNNING, started_at=job.started_at)


def _fail(job: QueryJob, code: str, message: str) -> None:
    _this_run(job).update(state=State.FAILED, error_code=code, error_message=message, finished_at=timezone.now())


def requeue_lost_jobs(*, now: datetime | None = None) -> list[str]:
    """Jobs whose worker died (no heartbeat for LOST_AFTER) go back to the queue, until JOB_QUEUE_SECONDS after
    they were submitted; then they fail with `worker_lost`. Each is audited (`query.job_retry`, `query.job_lost`);
    the lost run's own query gets its `query.run` (interrupted) from `query.interrupted`. Returns their ids."""
    now = now or timezone.now()
    lost = QueryJob.objects.filter(state=State.RUNNING, heartbeat_at__lt=now - LOST_AFTER)
    handled = []
    for job in lost:
        give_up = now > job.created_at + timedelta(seconds=settings.JOB_QUEUE_SECONDS)
        with transaction.atomic():
            if give_up:
                changed = _this_run(job).update(
                    state=State.FAILED,
                    error_code="worker_lost",
                    error_message="The worker running this job stopped; submit it again.",
                    finished_at=now,
                )
            else:
                changed = _this_run(job).update(
                    state=State.QUEUED, started_at=None, heartbeat_at=None, attempts=job.attempts + 1
                )
            if not changed:
                continue  # it moved on meanwhile
            record(
                "query.job_lost" if give_up else "query.job_retry",
                **job_actor(job),
                target=f"query_job:{job.pk}",
                details={"started_at": job.started_at.isoformat(), "heartbeat_at": job.heartbeat_at.isoformat()},
            )
            if not give_up:
                transaction.on_commit(lambda pk=job.pk: _enqueue(pk))
        handled.append(str(job.pk))
    return handled


def cancel_job(job: QueryJob, *, request=None) -> QueryJob:
    """Cancel a queued or running job; 409 job_finished when it already ended."""
    with transaction.atomic():
        updated = QueryJob.objects.filter(pk=job.pk, state__in=[State.QUEUED, State.RUNNING]).update(
            state=State.CANCELLED,
            error_code="cancelled",
            error_message="Cancelled by the client.",
            finished_at=timezone.now(),
        )
        if not updated:
            raise Refusal(f"The job has already {job.state}.", code="job_finished", kind=Kind.CONFLICT)
        record("query.job_cancel", **job_actor(job), target=f"query_job:{job.pk}", request=request)
    job.refresh_from_db()
    return job


def result_file(job: QueryJob) -> Path:
    """The finished result's file; 409 result_not_ready before it exists, 410 result_expired after expires_at."""
    _ready(job)
    path = results_dir() / job.result_path
    if job.expires_at <= timezone.now() or not path.exists():
        path.unlink(missing_ok=True)
        raise _expired()
    return path


def result_size(job: QueryJob) -> int:
    """The finished result's size wherever it is (a HEAD's Content-Length); refused as `result_file` is."""
    target = results_store()
    if target is None:
        return result_file(job).stat().st_size
    return _stored_size(job, target)


def _stored_size(job: QueryJob, target: Store) -> int:
    _ready(job)
    path = _stored_path(target, job.result_path)
    if job.expires_at <= timezone.now() or not target.exists(path):
        target.delete_file(path)
        raise _expired()
    return target.size_bytes(path)


def _ready(job: QueryJob) -> None:
    if job.state != State.SUCCEEDED:
        raise Refusal(f"The job is {job.state}; it has no result.", code="result_not_ready", kind=Kind.CONFLICT)


def _expired() -> Refusal:
    return Refusal("The job's result has expired; run the query again.", code="result_expired", kind=Kind.GONE)


def presigned_result(job: QueryJob, *, request=None, via: str) -> str | None:
    """A pre-signed URL of the result in the object store, once the job's grants still hold and the whole file
    is charged to `bytes_downloaded` (the URL serves any byte range of it, so all of it is charged) and the
    download audited (`presigned: true`); None when results are local (`open_result` serves them).
    Refusals as `open_result`'s."""
    target = results_store()
    if target is None:
        return None
    size = _stored_size(job, target)
    seconds = min(settings.SHARING_URL_SECONDS, int((job.expires_at - timezone.now()).total_seconds()))
    url = target.presigned_url(_stored_path(target, job.result_path), max(seconds, 1))
    if url is None:
        log.error("the object store has no key pair to sign a URL with (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
        raise Refusal("The result cannot be served right now.", code="store_unavailable", kind=Kind.UNAVAILABLE)
    details = {"bytes": size, "size": size, "format": job.format, "datasets": job.datasets, "via": via}
    result_use(job, request=request).commit({"bytes_downloaded": size}, {**details, "presigned": True})
    return url


def result_link(job: QueryJob) -> str:
    """A token for the signed download link of a finished job: valid RESULT_LINK_SECONDS, no bearer token needed."""
    return signing.dumps(str(job.pk), salt=_LINK_SALT, compress=True)


def job_for_link(token: str) -> QueryJob:
    """The job a signed link names; 404 link_invalid for a forged or altered one (or one whose client was
    disabled since), 410 link_expired after its time."""
    try:
        job_id = signing.loads(token, salt=_LINK_SALT, max_age=RESULT_LINK_SECONDS)
    except signing.SignatureExpired:
        raise Refusal(
            "This download link has expired; get a new one from the job.", code="link_expired", kind=Kind.GONE
        ) from None
    except signing.BadSignature:
        raise Refusal("This download link is not valid.", code="link_invalid", kind=Kind.NOT_FOUND) from None
    job = QueryJob.objects.filter(pk=job_id).first()
    if job is None or not Client.objects.filter(client_id=job.client_id, disabled_at__isnull=True).exists():
        raise Refusal("This download link is not valid.", code="link_invalid", kind=Kind.NOT_FOUND)
    return job


def open_result(
    job: QueryJob, *, request=None, via: str, part_of: Callable[[int], ByteRange | None] = lambda size: None
) -> tuple[BinaryIO, ByteRange | None, int, Callable[[int], None]]:
    """The result file, open, once the job's grants still hold and what will be sent is charged.

    `part_of(size)` is the caller's reading of what to send (the view's HTTP Range); it returns
    the byte range (None: all of it) or raises. Returns the file, that range and the file's size.
    What will be sent is charged to `bytes_downloaded` before sending. Refusals: result_not_ready,
    result_expired (result_file), a grant revoked since the job ran, the daily download quota, and
    whatever `part_of` raised. Every attempt is audited as `query.job_download`.
    The last item is to be called with the bytes actually sent (`vitamin.ranges.file_response`'s
    `on_close`): what was charged and not sent is given back, as `query.job_download_incomplete`.
    """
    path = result_file(job)
    try:
        result = path.open("rb")  # before charging: cleanup may delete an expiring file at any moment
    except FileNotFoundError:
        raise Refusal(
            "The job's result has expired; run the query again.", code="result_expired", kind=Kind.GONE
        ) from None
    size = os.fstat(result.fileno()).st_size
    details = {"bytes": size, "size": size, "format": job.format, "datasets": job.datasets, "via": via}
    chosen = []

    def choose_part() -> None:
        part = part_of(size)
        if part is not None:
            details.update(bytes=part.length, range=f"{part.start}-{part.end}")
        chosen.append(part)

    use = result_use(job, request=request)
    try:
        use.commit(lambda: {"bytes_downloaded": details["bytes"]}, details, check=choose_part)
    except BaseException:
        result.close()
        raise
    part = chosen[0]
    charged = details["bytes"]
    return result, part, size, lambda sent: use.give_back("bytes_downloaded", charged, sent, details)


def result_use(job: QueryJob, *, request=None) -> MeteredUse:
    """The metered use of a job's result: its grants are checked when asked for, by every path to the
    result (GET, a byte range, HEAD, the signed link), so a grant revoked since the job ran stops it
    (403, `grant.denied` on record)."""
    return MeteredUse(
        job.institution_id,
        _datasets_read(job),
        Mode.QUERY,
        action="query.job_download",
        actor=job_actor(job),
        target=f"query_job:{job.pk}",
        request=request,
    )


def result_grants(job: QueryJob, *, request=None) -> list[access.Grant]:
    """The grants a job's result is served under, checked now, for a HEAD: neither charged nor recorded
    as a download (a denial is on record as `grant.denied`)."""
    return [access.ensure(job.institution_id, slug, "query", request=request) for slug in _datasets_read(job)]


def _datasets_read(job: QueryJob) -> list[str]:
    """The slugs the job read; for a job finished before jobs kept them, those its SQL names."""
    if job.datasets:
        return sorted(job.datasets)
    return sorted(get_gateway().referenced_datasets(job.sql))


def cleanup_jobs(*, now=None) -> dict:
    """Delete expired results and leftovers of dead workers; fail jobs whose worker never finished them."""
    now = now or timezone.now()
    removed = 0
    for job in QueryJob.objects.filter(state=State.SUCCEEDED, expires_at__lte=now).exclude(result_path=""):
        _delete_result(job.result_path)
        QueryJob.objects.filter(pk=job.pk).update(result_path="")
        removed += 1
    stale = QueryJob.objects.filter(state=State.RUNNING, started_at__lt=now - STALE_RUNNING)
    lost = stale.update(
        state=State.FAILED,
        error_code="worker_lost",
        error_message="The worker running this job stopped; submit it again.",
        finished_at=now,
    )
    cutoff = (now - STALE_RUNNING).timestamp()
    partials = [p for p in results_dir().glob("*.part") if p.stat().st_mtime < cutoff] if results_dir().exists() else []
    for partial in partials:
        partial.unlink(missing_ok=True)
    return {"expired_results": removed, "lost_jobs": lost, "partial_files": len(partials)}
