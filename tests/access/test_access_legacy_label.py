"""A database migrated while the access app was labelled `grants` migrates on without losing a row."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from testenv import REPO_DIR

pytestmark = pytest.mark.slow


def manage(data_dir, *args) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["VITAMIN_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_DIR, env=env, capture_output=True, text=True, check=False
    )


def tables(db: sqlite3.Connection, prefix: str) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (prefix + "%",))
    return {name for (name,) in rows}


LATER_COLUMNS = [
    ("grants_quotaplan", "cohort_customers_per_day"),
    ("grants_subscription", "lookup_fields"),
    ("grants_subscription", "lookup_threshold_only"),
]


def make_it_look_as_before_the_rename(db: sqlite3.Connection) -> None:
    """What a database migrated by the `grants` app looked like: its tables, index, history and content types."""
    # The access generation (0004) came after: no table, and none of the triggers that write to it.
    for (trigger,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'access_generation_%'"
    ):
        db.execute(f'DROP TRIGGER "{trigger}"')
    db.execute("DROP TABLE access_accessgeneration")
    for table in tables(db, "access_"):
        db.execute(f'ALTER TABLE "{table}" RENAME TO "grants_{table.removeprefix("access_")}"')
    # Columns added by later migrations of `access` (0003): the grants era had none of them.
    for table, column in LATER_COLUMNS:
        db.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    index_sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'access_subs_status_1759f9_idx'").fetchone()[0]
    db.execute("DROP INDEX access_subs_status_1759f9_idx")
    db.execute(
        index_sql.replace("access_subs_status_1759f9_idx", "grants_subs_status_09b858_idx").replace(
            '"access_subscription"', '"grants_subscription"'
        )
    )
    db.execute("DELETE FROM django_migrations WHERE app = 'access' AND name != '0001_initial'")
    db.execute("UPDATE django_migrations SET app = 'grants' WHERE app = 'access'")
    db.execute("UPDATE django_content_type SET app_label = 'grants' WHERE app_label = 'access'")
    db.execute(
        "INSERT INTO grants_quotaplan (name, description, is_offered, queries_per_day, rows_returned_per_day,"
        " bytes_scanned_per_day, bytes_downloaded_per_day, lookups_per_day, concurrent_queries,"
        " max_query_seconds, max_result_rows, created_at, updated_at)"
        " VALUES ('legacy', '', 1, 5, 5, 5, 5, 5, 1, 5, 5, '2026-01-01', '2026-01-01')"
    )
    db.commit()


def test_a_database_of_the_grants_label_is_adopted_whole(tmp_path):
    first = manage(tmp_path, "migrate", "--noinput")
    assert first.returncode == 0, first.stderr
    db_path = tmp_path / "vitamin.sqlite3"
    with sqlite3.connect(db_path) as db:
        make_it_look_as_before_the_rename(db)
        assert tables(db, "grants_") and not tables(db, "access_")

    again = manage(tmp_path, "migrate", "--noinput")
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db_path) as db:
        assert not tables(db, "grants_")
        assert {"access_quotaplan", "access_subscription", "access_subscriptionchange"} <= tables(db, "access_")
        assert db.execute("SELECT queries_per_day FROM access_quotaplan WHERE name = 'legacy'").fetchone() == (5,)
        history = {name for (name,) in db.execute("SELECT name FROM django_migrations WHERE app = 'access'")}
        assert {"0001_initial", "0002_rename_index_with_the_app", "0004_access_generation"} <= history
        assert db.execute("SELECT count(*) FROM access_accessgeneration").fetchone() == (1,)
        assert not db.execute("SELECT 1 FROM django_migrations WHERE app = 'grants'").fetchall()
        assert not db.execute("SELECT 1 FROM django_content_type WHERE app_label = 'grants'").fetchall()
    assert manage(tmp_path, "migrate", "--check").returncode == 0


def test_a_new_database_is_left_alone(tmp_path):
    assert manage(tmp_path, "migrate", "--noinput").returncode == 0
    with sqlite3.connect(tmp_path / "vitamin.sqlite3") as db:
        assert not tables(db, "grants_")
        labels = {app for (app,) in db.execute("SELECT DISTINCT app FROM django_migrations")}
    assert "access" in labels and "grants" not in labels
