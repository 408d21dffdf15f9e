"""Refreshes on an S3-compatible store (a real SeaweedFS): publish, a publication that fails before its row
commits, orphan cleanup by age, and the catalog's sample read from the store."""

from __future__ import annotations

import io
import textwrap

import pytest
from django.core.management import call_command

from catalog import refresh as refresh_module
from catalog.models import Dataset, RefreshRun
from catalog.refresh import run_refresh, store
from catalog.samples import sample_for
from datasets.publish import is_complete, verify_version, version_numbers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

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
"""


@pytest.fixture
def spec_dir(tmp_path, settings, object_store_url):
    folder = tmp_path / "specs"
    folder.mkdir()
    settings.DATASET_SPECS_DIR = folder
    return folder


def write_source(spec_dir, rows: int, offset: int = 0) -> None:
    csv = spec_dir.parent / "sales.csv"
    csv.write_text(
        "branch,day,sales\n" + "".join(f"b{i % 7},2025-01-{1 + i % 28:02d},{i + offset}\n" for i in range(rows))
    )
    (spec_dir / "branch_sales.yaml").write_text(textwrap.dedent(SPEC.format(csv=csv)))


def refresh() -> RefreshRun:
    return run_refresh(RefreshRun.objects.create(dataset=Dataset.objects.get(slug="branch_sales")).pk)


class Crash(Exception):
    pass


def test_a_publication_that_fails_before_its_row_commits_leaves_the_previous_version_serving(spec_dir, monkeypatch):
    write_source(spec_dir, 200)
    call_command("sync_datasets", stdout=io.StringIO())
    first = refresh()
    assert first.status == RefreshRun.Status.PUBLISHED, first.error
    target = store()
    assert not target.is_local and verify_version(target, "branch_sales", 1) == []

    real_record = refresh_module.record

    def record(action, **kwargs):
        if action == "dataset.publish":
            raise Crash("the process died before the version row committed")
        return real_record(action, **kwargs)

    monkeypatch.setattr(refresh_module, "record", record)
    write_source(spec_dir, 300, offset=1000)
    with pytest.raises(Crash):
        refresh()
    monkeypatch.setattr(refresh_module, "record", real_record)

    dataset = Dataset.objects.get(slug="branch_sales")
    assert dataset.latest_version().number == 1
    assert version_numbers(target, "branch_sales") == [1]  # v2's files were removed again
    sample = sample_for(dataset, dataset.latest_version(), limit=3)
    assert sample.version == 1 and len(sample.rows) == 3 and sample.rows[0][2] < 1000


def test_cleanup_removes_an_orphan_on_the_object_store_once_it_is_old_enough(spec_dir, monkeypatch):
    write_source(spec_dir, 50)
    call_command("sync_datasets", stdout=io.StringIO())
    assert refresh().status == RefreshRun.Status.PUBLISHED
    target = store()
    target.write_bytes(target.path("datasets", "branch_sales", "v7", "part-0.parquet"), b"half a file")
    assert not is_complete(target, "branch_sales", 7)

    assert refresh_module.cleanup_store(target)["orphans"] == []  # fresh: maybe being published right now
    monkeypatch.setattr(refresh_module, "ORPHAN_MIN_AGE_SECONDS", -1)  # an S3 object's time cannot be set back
    assert refresh_module.cleanup_store(target)["orphans"] == ["branch_sales/v7"]
    assert version_numbers(target, "branch_sales") == [1]
    assert verify_version(target, "branch_sales", 1) == []
