"""Point-in-time history: monthly backfills published at their own time, as-of reads around them, and
restatements that are new versions and never change what an earlier instant reads."""

from __future__ import annotations

import datetime as dt
import io
import json
import textwrap
import zoneinfo
from pathlib import Path

import pytest
from catalog_support import approved, auth, bearer_token
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.history import months
from catalog.models import Dataset, RefreshRun
from catalog.refresh import run_refresh
from datasets.spec import HistorySpec, Mode

pytestmark = pytest.mark.django_db(transaction=True)
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")

# Each month's build reads the snapshot of the source as it stood at that month's end: the file named by
# VITAMIN_DATA_UNTIL (a real source would take it as a cut-off); the regular refresh reads `latest`.
SPEC = """
slug: branch_monthly
title: Branch sales, monthly
description: Sales per branch and month.
publisher: Test
contact: test@example.com
license: Test terms.
keywords: [sales]
theme: test
tier: open
update_frequency: monthly
schedule: "0 9 3 * *"
time_zone: Asia/Shanghai
time_column: month
source:
  kind: csv
  options:
    path: {folder}/sales-${{VITAMIN_DATA_UNTIL:-latest}}.csv
columns:
  - {{name: branch, type: string, role: dimension, description: Branch.}}
  - {{name: month, type: date, role: dimension, description: Month.}}
  - {{name: sales, type: int64, role: measure, description: Sales.}}
history:
  from: 2024-01
  to: 2024-03
  published: {{day: 3, time: "09:00"}}
retention:
  versions_kept: 50
"""


def write_snapshot(folder: Path, name: str, months: dict[str, int]) -> None:
    lines = "".join(
        f"b{branch},{month}-01,{sales + branch}\n" for month, sales in months.items() for branch in range(3)
    )
    (folder / f"sales-{name}.csv").write_text("branch,month,sales\n" + lines)


@pytest.fixture
def history_dataset(tmp_path, settings) -> Dataset:
    specs, data = tmp_path / "specs", tmp_path / "data"
    specs.mkdir()
    data.mkdir()
    settings.DATASET_SPECS_DIR = specs
    settings.STORE_URL = str(tmp_path / "store")
    (specs / "branch_monthly.yaml").write_text(textwrap.dedent(SPEC.format(folder=data)))
    write_snapshot(data, "2024-01-31", {"2024-01": 100})
    write_snapshot(data, "2024-02-29", {"2024-01": 100, "2024-02": 200})
    write_snapshot(data, "2024-03-31", {"2024-01": 100, "2024-02": 200, "2024-03": 300})
    call_command("sync_datasets", stdout=io.StringIO())
    return Dataset.objects.get(slug="branch_monthly")


def published(month: int, day: int = 3, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, minute, tzinfo=SHANGHAI)


def test_months_are_published_on_their_day_of_the_next_month_in_the_spec_time_zone():
    history = HistorySpec(dt.date(2024, 11, 1), dt.date(2025, 2, 1), publish_day=3, publish_time="09:30")
    got = [(m.first_day, m.last_day, m.published_at) for m in months(history, "Asia/Shanghai")]
    assert [row[:2] for row in got] == [
        (dt.date(2024, 11, 1), dt.date(2024, 11, 30)),
        (dt.date(2024, 12, 1), dt.date(2024, 12, 31)),
        (dt.date(2025, 1, 1), dt.date(2025, 1, 31)),
        (dt.date(2025, 2, 1), dt.date(2025, 2, 28)),
    ]
    assert got[1][2] == dt.datetime(2025, 1, 3, 9, 30, tzinfo=SHANGHAI)
    assert got[1][2].astimezone(dt.UTC).hour == 1  # 09:30 in Shanghai is 01:30 UTC


def test_a_backfill_publishes_one_version_per_month_as_of_its_publication_time(history_dataset):
    out = io.StringIO()
    call_command("backfill_dataset", "branch_monthly", stdout=out)
    versions = list(history_dataset.versions.order_by("number"))
    assert [v.number for v in versions] == [1, 2, 3]
    assert [v.created_at for v in versions] == [published(2), published(3), published(4)]
    assert [v.row_count for v in versions] == [3, 6, 9]  # each month's data as it stood then
    assert [v.column_stats["month"]["max"] for v in versions] == ["2024-01-01", "2024-02-01", "2024-03-01"]
    assert RefreshRun.objects.filter(trigger=RefreshRun.Trigger.BACKFILL, status="published").count() == 3
    assert "branch_monthly 2024-02 (published 2024-03-03 09:00" in out.getvalue()

    # As-of resolution around each publication: the instant itself sees the new version, a moment before does not.
    second = dt.timedelta(seconds=1)
    assert history_dataset.version_at(published(2) - second) is None
    assert history_dataset.version_at(published(2)).number == 1
    assert history_dataset.version_at(published(3) - second).number == 1
    assert history_dataset.version_at(published(3)).number == 2
    assert history_dataset.version_at(published(4, day=20)).number == 3

    # History only grows forward: a second backfill would put older months after newer versions.
    with pytest.raises(CommandError, match="history only grows forward"):
        call_command("backfill_dataset", "branch_monthly", stdout=io.StringIO())
    assert history_dataset.versions.count() == 3
    # --missing skips a dataset that has versions, and says so by publishing nothing.
    call_command("backfill_dataset", "--missing", stdout=io.StringIO())
    assert history_dataset.versions.count() == 3


def test_a_month_whose_source_is_missing_fails_alone_and_the_command_says_which(history_dataset, tmp_path):
    (tmp_path / "data" / "sales-2024-02-29.csv").unlink()
    with pytest.raises(CommandError, match="branch_monthly backfill 2024-02"):
        call_command("backfill_dataset", "branch_monthly", stdout=io.StringIO())
    runs = RefreshRun.objects.filter(trigger=RefreshRun.Trigger.BACKFILL).order_by("pk")
    assert [run.status for run in runs] == ["published", "failed", "published"]
    assert [v.created_at for v in history_dataset.versions.order_by("number")] == [published(2), published(4)]
    assert history_dataset.version_at(published(3, day=10)).number == 1  # February's data was never published


def test_bad_backfill_requests_are_refused_with_a_reason(history_dataset):
    with pytest.raises(CommandError, match="not a month"):
        call_command("backfill_dataset", "branch_monthly", "--from", "2024-1x", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no active dataset named nope"):
        call_command("backfill_dataset", "nope", stdout=io.StringIO())
    with pytest.raises(CommandError, match="name at least one dataset"):
        call_command("backfill_dataset", stdout=io.StringIO())
    assert not history_dataset.versions.exists()


def query(client, token, sql: str, as_of: dt.datetime | None = None) -> tuple[list, str]:
    body = {"sql": sql} if as_of is None else {"sql": sql, "as_of": as_of.isoformat()}
    response = client.post("/api/v1/query", body, content_type="application/json", **auth(token))
    assert response.status_code == 200, response.content
    return json.loads(b"".join(response.streaming_content))["rows"], response["X-Vitamin-Versions"]


def test_a_restatement_is_a_new_version_and_an_as_of_read_before_it_returns_the_old_numbers(
    history_dataset, tmp_path, client, fund, plan
):
    call_command("backfill_dataset", "branch_monthly", stdout=io.StringIO())
    approved(fund, history_dataset, plan, [Mode.QUERY])
    token = bearer_token(fund, scopes="query")
    sql = "SELECT month, sum(sales) AS sales FROM branch_monthly GROUP BY month ORDER BY month"
    # The regular refresh after the history: January is restated (a late correction), the rest unchanged.
    write_snapshot(tmp_path / "data", "latest", {"2024-01": 150, "2024-02": 200, "2024-03": 300})
    run = run_refresh(RefreshRun.objects.create(dataset=history_dataset).pk)
    assert run.status == RefreshRun.Status.PUBLISHED and run.version.number == 4
    restated_at = run.version.created_at

    old_rows, old_versions = query(client, token, sql, as_of=restated_at - dt.timedelta(seconds=1))
    assert old_versions == "branch_monthly=3"
    assert old_rows == [["2024-01-01", 303], ["2024-02-01", 603], ["2024-03-01", 903]]
    new_rows, new_versions = query(client, token, sql)
    assert new_versions == "branch_monthly=4"
    assert new_rows[0] == ["2024-01-01", 453] and new_rows[1:] == old_rows[1:]
    # Before February's publication, a backtest sees January only, with January's first numbers.
    rows, versions = query(client, token, sql, as_of=published(3) - dt.timedelta(minutes=1))
    assert (rows, versions) == ([["2024-01-01", 303]], "branch_monthly=1")
    # The old versions' files and rows are untouched by the restatement.
    assert history_dataset.versions.get(number=1).row_count == 3


def test_a_dataset_without_a_history_is_not_backfilled(history_dataset, tmp_path):
    spec_file = tmp_path / "specs" / "branch_monthly.yaml"
    text = spec_file.read_text()
    spec_file.write_text(text[: text.index("history:")] + text[text.index("retention:") :])
    call_command("sync_datasets", stdout=io.StringIO())
    with pytest.raises(CommandError, match="has no `history`"):
        call_command("backfill_dataset", "branch_monthly", stdout=io.StringIO())
    call_command("backfill_dataset", "--missing", stdout=io.StringIO())  # not one of those --missing builds
    assert not history_dataset.versions.exists()
