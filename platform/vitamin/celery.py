"""The Celery application: configured from Django settings (CELERY_*), tasks found in each app's tasks.py.

Tasks carry the id of the request that enqueued them (a message header), so a
worker's log lines and audit events join up with the web request's.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys

from celery import Celery, signals

from vitamin.request_context import get_request_id, new_request_id, set_request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vitamin.settings")

app = Celery("vitamin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

REQUEST_ID_HEADER = "vitamin_request_id"


def periodic_tasks() -> dict:
    """Beat's schedule: the union of every app's `tasks.PERIODIC_TASKS`.

    Each entry should set `options.expires` so that, when workers fall behind,
    scheduled runs expire instead of piling up.
    """
    from django.apps import apps

    schedule: dict = {}
    for config in apps.get_app_configs():
        try:
            module = importlib.import_module(f"{config.name}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name == f"{config.name}.tasks":
                continue
            raise
        schedule.update(getattr(module, "PERIODIC_TASKS", {}))
    return schedule


@app.on_after_finalize.connect
def _install_periodic_tasks(sender, **_):
    sender.conf.beat_schedule = periodic_tasks()


@signals.before_task_publish.connect
def _attach_request_id(headers=None, **_):
    if headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, get_request_id() or new_request_id())


@signals.task_prerun.connect
def _adopt_request_id(task=None, **_):
    offered = getattr(task.request, REQUEST_ID_HEADER, None) if task else None
    set_request_id(new_request_id(offered))


@signals.task_postrun.connect
def _forget_request_id(**_):
    set_request_id(None)


@signals.worker_ready.connect
def _restart_when_a_blocking_pool_loses_a_child(sender=None, **_):
    """With a broker that has no event loop (the embedded file-system queue), Celery runs billiard's blocking
    pool: its children share one task pipe whose read lock an idle child holds while it waits, so a child
    killed while idle takes the lock with it and every child after it waits forever (tasks stay reserved,
    never start). When such a pool loses a child it did not stop itself, the worker restarts in place (a warm
    stop, then exec of the same command line, as Celery's SIGHUP restart does: same pid, a fresh pool and
    lock). Redis and RabbitMQ use the asynchronous pool, whose children have pipes of their own; it is left alone."""
    from billiard.pool import EX_OK, EX_RECYCLE
    from celery.concurrency.asynpool import AsynPool
    from celery.worker import state

    pool = getattr(getattr(sender, "pool", None), "_pool", None)
    if pool is None or isinstance(pool, AsynPool):
        return

    def lost(process) -> None:
        if process.exitcode in (EX_OK, EX_RECYCLE) or getattr(process, "_controlled_termination", False):
            return
        if state.should_stop is None:
            logging.getLogger("vitamin.celery").error(
                "pool process %s died (exit %s); restarting the worker so its pool gets a fresh task pipe",
                process.pid,
                process.exitcode,
            )
            atexit.register(_exec_again)
            state.should_stop = EX_OK

    pool.on_process_down = lost


def _exec_again() -> None:
    """Celery's restart re-executes sys.argv, which fails for `python -m celery`; the original command line
    (interpreter options, -m and all) does not."""
    from celery import platforms

    platforms.close_open_fds([sys.__stdin__, sys.__stdout__, sys.__stderr__])
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - the worker's own command line


@app.task(name="vitamin.ping")
def ping() -> dict:
    """Round-trip check used by readiness tests and operators: proves a worker consumes the queue."""
    return {"pong": True, "request_id": get_request_id()}
