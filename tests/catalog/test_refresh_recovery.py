"""Recovery of refreshes whose worker died: queued again or failed within VITAMIN_REFRESH_STALE_SECONDS, never
blocking the next one, their staging and scratch folders swept at once (catalog.refresh.recover_refreshes).

These drive the sweep on runs left as a killed worker leaves them; tests/vitamin/test_embedded_faults.py kills
real workers.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from catalog import refresh as refresh_module
from catalog.models import Dataset, DatasetVersion, RefreshRun
from catalog.refresh import REFRESH_MAX_ATTEMPTS, recover_refreshes, run_refresh, store
from datasets.publish import STAGING_DIR, Staging, version_numbers
from tests.catalog.test_catalog_refresh import refresh, spec_dir, write_source  # noqa: F401 - spec_dir is a fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dataset(spec_dir, settings):  # noqa: F811 - the imported fixture
    settings.REFRESH_STALE_SECONDS = 30
    write_source(spec_dir, 30)
    call_command("sync_datasets", stdout=io.StringIO())
    return Dataset.objects.get()


def killed_run(dataset: Dataset, *, attempts: int = 1, silent_seconds: float = 31) -> RefreshRun:
    """A run as a SIGKILLed worker leaves it: running, its heartbeat stopped `silent_seconds` ago, its folders there."""
    beat = timezone.now() - timedelta(seconds=silent_seconds)
    run = RefreshRun.objects.create(
        dataset=dataset,
        status=RefreshRun.Status.RUNNING,
        started_at=beat,
        heartbeat_at=beat,
        attempts=attempts,
        task_id="the-lost-message",
    )
    Staging.create(store(), dataset.slug)
    (run_scratch(run) / "build-0123").mkdir(parents=True)
    return run


def run_scratch(run: RefreshRun) -> Path:
    return refresh_module.scratch_root() / f"run-{run.pk}"


def staged(dataset: Dataset) -> list[str]:
    return store().subdirectories(store().path(STAGING_DIR, dataset.slug))


def test_a_killed_run_is_queued_again_with_a_new_message_its_folders_swept_and_it_then_publishes(dataset):
    run = killed_run(dataset)
    assert staged(dataset)

    swept = recover_refreshes()

    assert swept["retried"] == [run.pk] and swept["failed"] == []
    run.refresh_from_db()
    assert run.status == RefreshRun.Status.QUEUED and "stopped responding" in run.error
    assert run.task_id and run.task_id != "the-lost-message"  # a new message: the lost one never comes back
    assert staged(dataset) == [] and not run_scratch(run).exists()
    retry = AuditEvent.objects.get(action="dataset.refresh.retry")
    assert retry.outcome == "interrupted" and retry.details["run"] == run.pk and retry.details["attempt"] == 1

    assert recover_refreshes()["retried"] == []  # queued now: a second sweep leaves it alone

    run = run_refresh(run.pk)
    assert run.status == RefreshRun.Status.PUBLISHED and run.attempts == 2
    assert version_numbers(store(), dataset.slug) == [1]


def test_a_run_killed_on_every_attempt_fails_and_the_next_refresh_is_not_blocked(dataset):
    run = killed_run(dataset, attempts=REFRESH_MAX_ATTEMPTS)

    swept = recover_refreshes()

    assert swept == {**swept, "retried": [], "failed": [run.pk]}
    run.refresh_from_db()
    assert run.status == RefreshRun.Status.FAILED and f"gave up after {REFRESH_MAX_ATTEMPTS} attempts" in run.error
    assert run.finished_at is not None
    failure = AuditEvent.objects.get(action="dataset.refresh")
    assert failure.outcome == "failure" and failure.details["run"] == run.pk
    assert refresh().status == RefreshRun.Status.PUBLISHED


def test_a_run_whose_heartbeat_is_fresh_is_left_running_with_its_folders(dataset):
    alive = killed_run(dataset, silent_seconds=5)
    finished = RefreshRun.objects.create(dataset=dataset, status=RefreshRun.Status.FAILED)
    (run_scratch(finished) / "build-4567").mkdir(parents=True)  # a build that ended without its cleanup

    swept = recover_refreshes()

    assert swept["retried"] == swept["failed"] == [] and swept["swept_staging"] == []
    assert swept["swept_scratch"] == [f"run-{finished.pk}"]
    alive.refresh_from_db()
    assert alive.status == RefreshRun.Status.RUNNING
    assert staged(dataset) and run_scratch(alive).exists() and not run_scratch(finished).exists()


def test_the_stale_rule_is_the_setting(dataset, settings):
    run = killed_run(dataset, silent_seconds=50)
    settings.REFRESH_STALE_SECONDS = 60
    assert recover_refreshes()["retried"] == []
    settings.REFRESH_STALE_SECONDS = 40
    assert recover_refreshes()["retried"] == [run.pk]


def test_a_run_presumed_dead_while_it_still_builds_publishes_nothing(dataset, monkeypatch):
    """The sweep queued the run again while this worker, only slow, still built it: the attempt number fences
    it, so it neither publishes nor leaves files, and the retry is what publishes."""
    real_build = refresh_module.build

    def build_then_lose_the_run(*args, **kwargs):
        result = real_build(*args, **kwargs)
        RefreshRun.objects.filter(pk=run.pk).update(status=RefreshRun.Status.QUEUED)  # what the sweep does
        return result

    monkeypatch.setattr(refresh_module, "build", build_then_lose_the_run)
    run = RefreshRun.objects.create(dataset=dataset)
    run_refresh(run.pk)

    assert not DatasetVersion.objects.exists()
    assert version_numbers(store(), dataset.slug) == [] and staged(dataset) == []
    monkeypatch.setattr(refresh_module, "build", real_build)
    assert run_refresh(run.pk).status == RefreshRun.Status.PUBLISHED


def test_a_second_message_for_a_run_another_claimed_leaves_it_running(dataset):
    run = RefreshRun.objects.create(dataset=dataset)
    as_the_second_message_read_it = RefreshRun.objects.get(pk=run.pk)
    assert refresh_module._claim(run) is True
    assert refresh_module._claim(as_the_second_message_read_it) is None
    run.refresh_from_db()
    assert run.status == RefreshRun.Status.RUNNING and run.attempts == 1
