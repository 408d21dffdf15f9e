"""A full disk, for real: a 4 MiB tmpfs mounted as the store while a refresh builds, and as the query engine's
temp directory while a big sort spills. Each ends in a clear error, and leaves nothing corrupt: the previous
version still serves with its files intact, no partial files stay, and the engine answers the next query.

Mounting needs root (CAP_SYS_ADMIN); without it these tests are skipped, and say so.
"""

from __future__ import annotations

import io
import subprocess
import textwrap
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from query_support import FUND

from catalog.models import Dataset, DatasetVersion, RefreshRun
from catalog.refresh import run_refresh, store
from datasets.publish import STAGING_DIR, verify_version, version_numbers
from datasets.query.bindings import DatasetBinding
from datasets.query.errors import QueryError
from datasets.query.gateway import Gateway
from datasets.query.limits import Limits
from datasets.query.sandbox import SandboxConfig

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FULL_DISK_BYTES = 4 * 1024**2

SPEC = """
slug: noise
title: Noise
description: Random rows.
publisher: Test
contact: test@example.com
license: Test terms.
keywords: [noise]
theme: test
tier: open
update_frequency: daily
schedule: "0 3 * * *"
source:
  kind: csv
  options:
    path: {csv}
columns:
  - {{name: id, type: int64, role: dimension, description: Row.}}
  - {{name: noise, type: string, role: dimension, description: Random text.}}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of FULL_DISK_BYTES, unmounted afterwards."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def write_noise(csv: Path, rows: int) -> None:
    """Incompressible rows: `rows` of them make a Parquet file of about rows * 40 bytes."""
    csv.write_text("id,noise\n" + "".join(f"{i},{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}\n" for i in range(rows)))


def test_a_refresh_that_fills_the_store_fails_clearly_and_the_previous_version_serves_intact(
    small_disk, tmp_path, settings
):
    specs = tmp_path / "specs"
    specs.mkdir()
    csv = tmp_path / "noise.csv"
    (specs / "noise.yaml").write_text(textwrap.dedent(SPEC.format(csv=csv)))
    settings.DATASET_SPECS_DIR = specs
    settings.STORE_URL = str(small_disk)
    write_noise(csv, 2_000)
    call_command("sync_datasets", stdout=io.StringIO())
    dataset = Dataset.objects.get()
    assert run_refresh(RefreshRun.objects.create(dataset=dataset).pk).status == RefreshRun.Status.PUBLISHED

    write_noise(csv, 300_000)  # ~12 MB of Parquet into a 4 MiB disk
    run = run_refresh(RefreshRun.objects.create(dataset=dataset).pk)

    assert run.status == RefreshRun.Status.FAILED
    assert run.error.startswith("disk full:") and "No space left on device" in run.error, run.error
    assert list(DatasetVersion.objects.values_list("number", flat=True)) == [1]
    assert version_numbers(store(), "noise") == [1] and verify_version(store(), "noise", 1) == []
    assert list((small_disk / STAGING_DIR / "noise").iterdir()) == []  # the failed build's staging went
    assert not list((settings.DATA_DIR / "scratch").glob(f"run-{run.pk}"))
    write_noise(csv, 2_500)  # room again: the next refresh publishes
    assert run_refresh(RefreshRun.objects.create(dataset=dataset).pk).status == RefreshRun.Status.PUBLISHED


def test_a_query_whose_spill_fills_the_temp_disk_fails_clearly_and_the_engine_answers_the_next(small_disk, tmp_path):
    rows = 2_000_000
    table = pa.table({"id": pa.array(range(rows), pa.int64())})
    table = table.append_column("noise", pc.cast(pc.multiply(table["id"], 2654435761), pa.string()))
    path = tmp_path / "big.parquet"
    pq.write_table(table, path)
    binding = DatasetBinding(
        "big", 1, "open", (str(path),), {"id": "dimension", "noise": "dimension"}, size_bytes=path.stat().st_size
    )
    gateway = Gateway(
        SandboxConfig(
            store_root=str(tmp_path),
            temp_directory=str(small_disk),
            memory_limit_bytes=48 * 1024**2,  # the sort must spill
            threads=1,
            max_temp_directory_bytes=1024**3,  # the disk fills before DuckDB's own cap
            max_concurrent_queries=1,
        )
    )
    try:
        with pytest.raises(QueryError) as full:
            with gateway.run(
                "SELECT noise, id FROM big ORDER BY noise DESC", {"big": binding}, FUND.key, Limits()
            ) as result:
                for _ in result.record_batches():
                    pass
        print(f"\nthe temp disk filled: {full.value.code}: {full.value.message}")
        assert full.value.code == "server_busy" and "no disk space left" in full.value.message  # 503, retry later
        assert "small-disk" not in full.value.message  # no server path in what a partner reads
        with gateway.run("SELECT count(*) FROM big", {"big": binding}, FUND.key, Limits()) as result:
            assert [batch.column(0).to_pylist() for batch in result.record_batches()] == [[rows]]
        assert sum(file.stat().st_size for file in small_disk.rglob("*") if file.is_file()) == 0
    finally:
        gateway.close()
