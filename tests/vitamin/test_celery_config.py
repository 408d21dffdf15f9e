"""Celery is configured for a real broker and every periodic task can expire."""

from vitamin.celery import app, periodic_tasks


def test_tasks_are_not_run_eagerly_and_ack_late():
    assert not app.conf.task_always_eager
    assert app.conf.task_acks_late
    assert app.conf.broker_url.startswith("filesystem://")


def test_every_periodic_task_is_registered_and_expires():
    schedule = periodic_tasks()
    app.loader.import_default_modules()
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name}: unknown task {entry['task']}"
        assert entry.get("options", {}).get("expires"), f"{name} must expire so runs cannot pile up"
