"""Concurrent writers, in threads and in separate OS processes, never fork or gap the chain.

On PostgreSQL the chain's lock and the read of its head are one round trip (`audit.chain_lock`): a
function whose read takes a snapshot after the lock is granted. Written as one plain statement
(`SELECT ... FROM (SELECT pg_advisory_xact_lock(k)), LATERAL (SELECT ... head)`) the read's snapshot
predates the wait, and both tests here fail with forked chains.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from audit.models import AuditEvent
from audit.service import record, verify_log
from testenv import REPO_DIR


def assert_contiguous_intact_chain(expected_count: int) -> None:
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, expected_count + 1))
    result = verify_log()
    assert result.ok, result.message
    assert result.events_checked == expected_count


@pytest.mark.django_db(transaction=True)
def test_threads_appending_at_once_build_one_unbroken_chain():
    thread_count, events_per_thread = 4, 12
    start_together = threading.Barrier(thread_count)
    errors: list[BaseException] = []

    def append_events(writer: int) -> None:
        try:
            start_together.wait()
            for number in range(events_per_thread):
                record("test.thread", actor_id=f"writer-{writer}", details={"number": number})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append_events, args=(writer,)) for writer in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert_contiguous_intact_chain(thread_count * events_per_thread)
    for writer in range(thread_count):
        assert AuditEvent.objects.filter(actor_id=f"writer-{writer}").count() == events_per_thread


_CHILD_SCRIPT = """
import os, time
from audit.service import record
open(os.environ["AUDIT_TEST_READY_FILE"], "w").close()
while not os.path.exists(os.environ["AUDIT_TEST_GO_FILE"]):
    time.sleep(0.01)
for number in range(int(os.environ["AUDIT_TEST_EVENTS"])):
    record("test.process", actor_id=os.environ["AUDIT_TEST_WRITER"], details={"number": number})
"""


def _database_url(settings: dict) -> str:
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"  # the test database is a file shared by every process
    user = quote(settings["USER"] or "")
    password = f":{quote(settings['PASSWORD'])}" if settings["PASSWORD"] else ""
    return f"postgres://{user}{password}@{settings['HOST'] or 'localhost'}:{settings['PORT'] or 5432}/{quote(settings['NAME'])}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_separate_processes_appending_at_once_build_one_unbroken_chain(tmp_path: Path):
    process_count, events_per_process = 3, 15
    go_file = tmp_path / "go"
    # Each child is a fresh Django process pointed at this test database.
    environment = {**os.environ, "DATABASE_URL": _database_url(connection.settings_dict)}
    children = [
        subprocess.Popen(
            [sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c", _CHILD_SCRIPT],
            env={
                **environment,
                "AUDIT_TEST_READY_FILE": str(tmp_path / f"ready-{number}"),
                "AUDIT_TEST_GO_FILE": str(go_file),
                "AUDIT_TEST_EVENTS": str(events_per_process),
                "AUDIT_TEST_WRITER": f"process-{number}",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(process_count)
    ]
    # Release them together once all have started Django, so their appends overlap.
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < process_count and time.monotonic() < deadline:
        time.sleep(0.05)
    go_file.touch()
    for child in children:
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr

    assert_contiguous_intact_chain(process_count * events_per_process)
    for number in range(process_count):
        assert AuditEvent.objects.filter(actor_id=f"process-{number}").count() == events_per_process
