"""SQLite writers queue on `<database>.writers` (vitamin.sqlite_backend) instead of SQLite's sleeping busy handler."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite backend's own lock")


def _lock_is_free(path: str) -> bool:
    """Whether another open file of `path` can take the writers' lock right now (and gives it back)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def _new_connection(**options):
    fresh = connections.create_connection("default")
    fresh.settings_dict = {**fresh.settings_dict, "OPTIONS": {**fresh.settings_dict["OPTIONS"], **options}}
    return fresh


@pytest.fixture
def counter_table(transactional_db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS writers_test (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        cursor.execute("DELETE FROM writers_test")
        cursor.execute("INSERT INTO writers_test (id, n) VALUES (1, 0)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE writers_test")


def test_a_write_transaction_holds_the_writers_lock_until_it_ends(counter_table):
    path = f"{connection.settings_dict['NAME']}.writers"
    for end in ("commit", "rollback"):
        assert _lock_is_free(path)
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("UPDATE writers_test SET n = n + 1")
                assert not _lock_is_free(path)
                if end == "rollback":
                    raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert _lock_is_free(path)
    other = _new_connection()
    other.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    assert not _lock_is_free(path)
    other.close()  # a connection closed in its transaction gives the lock back
    assert _lock_is_free(path)


def test_a_writer_that_waits_past_its_timeout_fails_as_sqlite_would(counter_table):
    waiting = _new_connection(timeout=0.2)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE writers_test SET n = n + 1")
        with pytest.raises(OperationalError, match="database is locked"):
            waiting.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    waiting.close()


def test_concurrent_read_then_write_transactions_lose_no_update(counter_table):
    threads, each = 8, 25
    errors: list[BaseException] = []

    def add() -> None:
        try:
            for _ in range(each):
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT n FROM writers_test WHERE id = 1")
                        (n,) = cursor.fetchone()
                        cursor.execute("UPDATE writers_test SET n = %s WHERE id = 1", [n + 1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    with connection.cursor() as cursor:
        cursor.execute("SELECT n FROM writers_test WHERE id = 1")
        assert cursor.fetchone() == (threads * each,)
