"""The Celery application: configured from Django settings (CELERY_*), tasks found in each app's tasks.py.

Tasks carry the id of the request that enqueued them (a message header), so a
worker's log lines and audit events join up with the web request's.
"""

from __future__ import annotations

import importlib
import os

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


@app.task(name="vitamin.ping")
def ping() -> dict:
    """Round-trip check used by readiness tests and operators: proves a worker consumes the queue."""
    return {"pong": True, "request_id": get_request_id()}
