"""The Django side of the pipeline: sync specs, refresh, publish atomically, retire, one refresh at a time."""

from __future__ import annotations

import io
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditEvent
from catalog import refresh as refresh_module
from catalog.models import Dataset, DatasetVersion, RefreshRun
from catalog.refresh import apply_retention, register_pin_provider, run_refresh, store
from catalog.tasks import dispatch_due_refreshes, due
from datasets.publish import version_numbers

# Real transactions: the build reports progress from a thread with its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)

SPEC = """
slug: branch_sales
title: Branch sales
description: Sales per branch and day.
publisher: Test
contact: test@example.com
license: Test terms.
keywords: [sales]
theme: test
tier: open
update_frequency: daily
schedule: "0 3 * * *"
source:
  kind: csv
  options:
    path: {csv}
columns:
  - {{name: branch, type: string, role: dimension, description: Branch.}}
  - {{name: day, type: string, role: dimension, description: Day.}}
  - {{name: sales, type: int64, role: measure, description: Sales.}}
retention:
  versions_kept: {kept}
"""


@pytest.fixture
def spec_dir(tmp_path, settings):
    folder = tmp_path / "specs"
    folder.mkdir()
    settings.DATASET_SPECS_DIR = folder
    settings.STORE_URL = str(tmp_path / "store")
    return folder


def write_source(spec_dir: Path, rows: int, *, kept: int = 2, offset: int = 0) -> None:
    csv = spec_dir.parent / "sales.csv"
    csv.write_text(
        "branch,day,sales\n" + "".join(f"b{i % 7},2025-01-{1 + i % 28:02d},{i + offset}\n" for i in range(rows))
    )
    (spec_dir / "branch_sales.yaml").write_text(textwrap.dedent(SPEC.format(csv=csv, kept=kept)))


def refresh(slug: str = "branch_sales") -> RefreshRun:
    run = RefreshRun.objects.create(dataset=Dataset.objects.get(slug=slug))
    return run_refresh(run.pk)


def test_sync_then_refresh_publishes_a_complete_version(spec_dir):
    write_source(spec_dir, 500)
    out = io.StringIO()
    call_command("sync_datasets", stdout=out)
    assert "created: branch_sales" in out.getvalue()

    run = refresh()
    assert run.status == RefreshRun.Status.PUBLISHED, run.error
    version = run.version
    assert (version.number, version.row_count, version.status) == (1, 500, DatasetVersion.Status.PUBLISHED)
    assert version.files and all(len(f["sha256"]) == 64 for f in version.files)
    target = store()
    for entry in version.files:
        assert target.exists(target.path(version.location, entry["path"]))
    assert {c["name"] for c in version.schema} == {"branch", "day", "sales"}
    assert version.column_stats["sales"]["max"] in (499, "499")
    assert AuditEvent.objects.filter(action="dataset.publish", target="branch_sales@v1").exists()


def test_identical_content_is_not_published_again_but_new_content_is(spec_dir):
    write_source(spec_dir, 300)
    call_command("sync_datasets", stdout=io.StringIO())
    assert refresh().status == RefreshRun.Status.PUBLISHED
    second = refresh()
    assert second.status == RefreshRun.Status.UNCHANGED and second.version.number == 1
    write_source(spec_dir, 300, offset=1)
    third = refresh()
    assert third.status == RefreshRun.Status.PUBLISHED and third.version.number == 2
    assert version_numbers(store(), "branch_sales") == [1, 2]


def test_retention_retires_old_versions_and_keeps_pinned_files(spec_dir):
    write_source(spec_dir, 100, kept=1)
    call_command("sync_datasets", stdout=io.StringIO())
    dataset = Dataset.objects.get()
    pinned = {1}
    register_pin_provider(lambda d: pinned if d.slug == "branch_sales" else set())
    try:
        for offset in range(3):
            write_source(spec_dir, 100, kept=1, offset=offset)
            assert refresh().status == RefreshRun.Status.PUBLISHED
        statuses = dict(dataset.versions.values_list("number", "status"))
        assert statuses == {1: "retired", 2: "retired", 3: "published"}
        assert version_numbers(store(), "branch_sales") == [1, 3]  # v1 is pinned, so its files stay
        pinned.clear()
        apply_retention(dataset, 1, store())
        assert version_numbers(store(), "branch_sales") == [3]
    finally:
        refresh_module._pin_providers.clear()


def test_a_failed_publish_transaction_leaves_no_files_and_the_previous_version_serving(spec_dir, monkeypatch):
    write_source(spec_dir, 100)
    call_command("sync_datasets", stdout=io.StringIO())
    assert refresh().status == RefreshRun.Status.PUBLISHED
    write_source(spec_dir, 100, offset=5)

    def audit_down(*args, **kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(refresh_module, "record", audit_down)
    with pytest.raises(RuntimeError):
        refresh()
    dataset = Dataset.objects.get()
    assert dataset.latest_version().number == 1
    assert DatasetVersion.objects.count() == 1
    assert version_numbers(store(), "branch_sales") == [1]  # v2's moved files were removed again


def test_one_refresh_per_dataset_at_a_time(spec_dir):
    write_source(spec_dir, 50)
    call_command("sync_datasets", stdout=io.StringIO())
    dataset = Dataset.objects.get()
    running = RefreshRun.objects.create(
        dataset=dataset, status=RefreshRun.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    skipped = refresh()
    assert skipped.status == RefreshRun.Status.SKIPPED
    assert not dataset.versions.exists()

    # A running refresh whose worker died (no heartbeat for long) does not block forever.
    RefreshRun.objects.filter(pk=running.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert refresh().status == RefreshRun.Status.PUBLISHED
    running.refresh_from_db()
    assert running.status == RefreshRun.Status.FAILED and "stopped responding" in running.error


def test_database_allows_only_one_running_refresh_per_dataset(spec_dir):
    from django.db import IntegrityError, transaction

    write_source(spec_dir, 10)
    call_command("sync_datasets", stdout=io.StringIO())
    dataset = Dataset.objects.get()
    RefreshRun.objects.create(dataset=dataset, status=RefreshRun.Status.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        RefreshRun.objects.create(dataset=dataset, status=RefreshRun.Status.RUNNING)


def test_a_broken_source_fails_the_run_with_its_reason(spec_dir):
    write_source(spec_dir, 10)
    call_command("sync_datasets", stdout=io.StringIO())
    (spec_dir.parent / "sales.csv").write_text("branch,day,sales\nb1,2025-01-01,not-a-number\n")
    run = refresh()
    assert run.status == RefreshRun.Status.FAILED
    assert run.error
    assert AuditEvent.objects.filter(action="dataset.refresh", outcome="failure").exists()


def test_invalid_specs_are_reported_with_file_and_field(spec_dir):
    (spec_dir / "bad.yaml").write_text("slug: Bad Slug\ntier: secret\n")
    with pytest.raises(CommandError) as excinfo:
        call_command("sync_datasets", stdout=io.StringIO())
    message = str(excinfo.value)
    assert "bad.yaml" in message and "tier" in message


def test_removed_spec_deactivates_its_dataset(spec_dir):
    write_source(spec_dir, 10)
    call_command("sync_datasets", stdout=io.StringIO())
    (spec_dir / "branch_sales.yaml").unlink()
    call_command("sync_datasets", stdout=io.StringIO())
    assert Dataset.objects.get().is_active is False


def test_schedule_dispatch_queues_each_firing_once(spec_dir):
    write_source(spec_dir, 10)
    call_command("sync_datasets", stdout=io.StringIO())
    dataset = Dataset.objects.get()
    assert not due(dataset, timezone.now())  # synced just now: nothing has fired since
    Dataset.objects.update(last_scheduled_at=timezone.now() - timedelta(days=2))
    assert dispatch_due_refreshes() == ["branch_sales"]
    assert dispatch_due_refreshes() == []
    run = RefreshRun.objects.get()
    assert run.trigger == RefreshRun.Trigger.SCHEDULE and run.task_id


def test_demo_specs_build_at_small_scale(settings, tmp_path):
    settings.STORE_URL = str(tmp_path / "store")
    settings.DEMO_TRANSACTIONS = 20_000
    call_command("sync_datasets", stdout=io.StringIO())
    out = io.StringIO()
    call_command("build_demo_datasets", stdout=out)
    assert out.getvalue().count("published v1") == 7, out.getvalue()
    for dataset in Dataset.objects.all():
        assert dataset.latest_version().privacy_report


def test_cleanup_removes_stale_staging_scratch_and_orphans_but_not_fresh_work(spec_dir, settings):
    import os
    import time

    write_source(spec_dir, 20)
    call_command("sync_datasets", stdout=io.StringIO())
    assert refresh().status == RefreshRun.Status.PUBLISHED
    target = store()
    old = time.time() - 2 * 24 * 3600

    orphan = Path(target.path("datasets", "branch_sales", "v7"))
    orphan.mkdir(parents=True)
    (orphan / "part-0.parquet").write_bytes(b"x")
    os.utime(orphan, (old, old))
    fresh_orphan = Path(target.path("datasets", "branch_sales", "v8"))  # maybe being published right now
    fresh_orphan.mkdir()
    scratch = settings.DATA_DIR / "scratch" / "build-dead"
    scratch.mkdir(parents=True)
    os.utime(scratch, (old, old))

    removed = refresh_module.cleanup_store(target)
    assert removed["orphans"] == ["branch_sales/v7"]
    assert "build-dead" in removed["scratch"]
    assert not orphan.exists() and fresh_orphan.exists()
    assert version_numbers(target, "branch_sales") == [1, 8]
    assert Dataset.objects.get().latest_version().number == 1


def test_the_heartbeat_reports_progress_while_a_build_runs_and_survives_a_failing_report(spec_dir, monkeypatch):
    from catalog import refresh as refresh_module

    monkeypatch.setattr(refresh_module, "HEARTBEAT_SECONDS", 0.005)
    write_source(spec_dir, 200_000)
    call_command("sync_datasets", stdout=io.StringIO())
    reports: list[int] = []

    def report(rows: int) -> None:
        reports.append(rows)
        if len(reports) == 1:
            raise BrokenPipeError("the terminal went away")  # a tick that fails: the next still comes

    run = RefreshRun.objects.create(dataset=Dataset.objects.get(slug="branch_sales"))
    started = run.created_at
    run = run_refresh(run.pk, on_progress=report)

    assert run.status == RefreshRun.Status.PUBLISHED, run.error
    assert len(reports) >= 2
    assert run.heartbeat_at is not None and run.heartbeat_at >= started


# --- each version keeps the spec it was built from ---------------------------------------------

VISITS_SPEC = """
slug: branch_visits
title: Branch visits
description: Visits per customer and branch.
publisher: Test
contact: test@example.com
license: Test terms.
keywords: [visits]
theme: test
tier: aggregate
update_frequency: daily
schedule: "0 3 * * *"
source:
  kind: csv
  options:
    path: {csv}
columns:
  - {{name: customer, from: customer_id, role: entity, action: pseudonymize, description: The customer.}}
  - {{name: branch, type: string, role: {branch_role}, description: Branch.}}
  - {{name: spend, type: int64, role: measure, description: Spend.}}
privacy:
  k: 2
  entity: customer
"""


def write_visits(spec_dir: Path, branch_role: str) -> None:
    csv = spec_dir.parent / "visits.csv"
    csv.write_text("customer_id,branch,spend\n" + "".join(f"c{i % 9},b{i % 3},{i}\n" for i in range(90)))
    (spec_dir / "branch_visits.yaml").write_text(textwrap.dedent(VISITS_SPEC.format(csv=csv, branch_role=branch_role)))


def test_a_version_is_governed_by_the_spec_it_was_built_from_not_todays(spec_dir, tmp_path):
    from datasets.query.errors import QueryRejected
    from datasets.query.gateway import Gateway
    from datasets.query.sandbox import SandboxConfig
    from datasets.spec import DatasetSpec
    from query.service import binding_for

    write_visits(spec_dir, branch_role="sensitive")  # v1: branch may not be grouped by
    call_command("sync_datasets", stdout=io.StringIO())
    first = refresh("branch_visits")
    assert first.status == RefreshRun.Status.PUBLISHED, first.error

    write_visits(spec_dir, branch_role="dimension")  # the spec changes a role; the data does not
    call_command("sync_datasets", stdout=io.StringIO())
    second = refresh("branch_visits")
    assert second.status == RefreshRun.Status.PUBLISHED, second.error  # a new spec is a new version
    v1, v2 = first.version, second.version
    assert v1.content_hash == v2.content_hash and v1.spec_fingerprint != v2.spec_fingerprint

    # The stored spec is the typed spec, whole: the catalog's current one is the new file's.
    dataset = Dataset.objects.get(slug="branch_visits")
    assert DatasetSpec.from_document(v1.spec).column("branch").role == "sensitive"
    assert dataset.current_spec.column("branch").role == v2.dataset_spec.column("branch").role == "dimension"

    store_root = Path(store().root)
    config = SandboxConfig(
        store_root=str(store_root),
        temp_directory=str(tmp_path / "query-tmp"),
        memory_limit_bytes=256 * 1024**2,
        threads=1,
        max_temp_directory_bytes=64 * 1024**2,
        max_concurrent_queries=1,
    )
    gateway = Gateway(config)
    try:
        sql = "SELECT branch, sum(spend) AS spend FROM branch_visits GROUP BY branch"
        old = binding_for(dataset, DatasetVersion.objects.get(pk=v1.pk), store())
        new = binding_for(dataset, DatasetVersion.objects.get(pk=v2.pk), store())
        assert old.columns["branch"] == "sensitive" and new.columns["branch"] == "dimension"
        assert "branch" not in old.analysis.dimensions and "branch" in new.analysis.dimensions
        with pytest.raises(QueryRejected):
            gateway.check(sql, {"branch_visits": old})  # v1 still obeys its own rules
        assert gateway.check(sql, {"branch_visits": new}).aggregate
    finally:
        gateway.close()


def test_a_spec_document_round_trips_for_every_demo_spec_and_rule():
    import dataclasses
    import json
    import typing

    from catalog.sync import load_catalog_specs
    from datasets.generalize import Rule, parse_rule
    from datasets.spec import ColumnSpec, DatasetSpec

    specs = load_catalog_specs()
    rules = [
        {"rule": "bucket", "edges": [0, 10.5, 100]},
        {"rule": "bucket", "width": 5},
        {"rule": "truncate", "unit": "month"},
        {"rule": "age_band", "width": 10, "reference_date": "2025-12-31"},
        {"rule": "region", "level": "region"},
        {"rule": "top_bottom", "bottom": 1, "top": 99.5},
        {"rule": "round", "step": 10},
        {"rule": "keep"},
    ]
    assert {raw["rule"] for raw in rules} == {rule.kind for rule in typing.get_args(Rule)}  # every kind there is
    extra = tuple(
        ColumnSpec(name=f"c{n}", source="x", role="quasi", description="", type="float64", generalize=parse_rule(raw))
        for n, raw in enumerate(rules)
    )
    for spec in [*specs, dataclasses.replace(specs[0], columns=specs[0].columns + extra)]:
        document = json.loads(json.dumps(spec.to_document()))  # what a JSON column stores
        back = DatasetSpec.from_document(document)
        assert back == spec and back.fingerprint == spec.fingerprint
    with pytest.raises(ValueError):
        DatasetSpec.from_document({**specs[0].to_document(), "tier": "secret"})
    with pytest.raises(ValueError):
        DatasetSpec.from_document({**specs[0].to_document(), "unknown_field": 1})
