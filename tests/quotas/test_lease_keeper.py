"""Leases that belong to a live holder (quotas.keeper, quotas.service.renew): a process that holds a slot keeps
it as long as it lives, and a process killed while holding it gives it back within the lease's lifetime.

The measured recovery time is printed (`-s`); the only bound asserted is "within seconds" of the lifetime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from quotas.service import RedisBackend, live_leases, release, renew, reserve

HOLDER = Path(__file__).with_name("lease_holder.py")
METRIC = "concurrent_queries"
pytestmark = pytest.mark.django_db


def test_renewing_moves_a_live_lease_on_and_never_revives_a_lapsed_one(backend, subject, noon):
    kept = reserve(subject, METRIC, 2, 10, backend=backend, now=noon)
    lapsing = reserve(subject, METRIC, 2, 5, backend=backend, now=noon)
    later = noon + timedelta(seconds=8)  # `lapsing` is gone, `kept` has 2 s left

    assert renew([kept, lapsing], 10, backend=backend, now=later) == 1
    assert live_leases([kept, lapsing], backend=backend, now=later + timedelta(seconds=9)) == {kept.lease_id}
    # The lapsed lease's slot was free for someone else, and stays so: the limit is never passed.
    assert reserve(subject, METRIC, 2, 10, backend=backend, now=later) is not None
    assert reserve(subject, METRIC, 2, 10, backend=backend, now=later) is None
    release(kept, backend=backend)
    assert live_leases([kept], backend=backend, now=later) == set()
    assert renew([kept], 10, backend=backend, now=later) == 0


def test_a_lease_is_named_after_its_holder_when_asked(backend, subject, noon):
    from quotas.service import reserve_lease

    lease, _ = reserve_lease(subject, METRIC, 1, 10, backend=backend, now=noon, lease_id="q" * 62 + ".0")
    assert lease.lease_id == "q" * 62 + ".0"
    assert live_leases([lease], backend=backend, now=noon) == {lease.lease_id}
    with pytest.raises(ValueError, match="lease_id"):
        reserve_lease(subject, METRIC, 1, 10, backend=backend, now=noon, lease_id="x" * 65)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_holder_gives_its_slot_back_within_the_lease_lifetime_and_a_live_one_keeps_it(backend, subject):
    ttl = 3
    holder = subprocess.Popen(
        [sys.executable, str(HOLDER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        job = {
            "database": dict(connection.settings_dict),
            "backend": "redis" if isinstance(backend, RedisBackend) else "database",
            "redis_url": backend.url if isinstance(backend, RedisBackend) else None,
            "subject": subject,
            "ttl_seconds": ttl,
        }
        holder.stdin.write(json.dumps(job, default=str) + "\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "held"

        time.sleep(3 * ttl)  # three lifetimes: only the keeper's renewals keep the slot taken
        assert reserve(subject, METRIC, 1, ttl, backend=backend) is None

        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed_at = time.monotonic()
        while reserve(subject, METRIC, 1, ttl, backend=backend) is None:
            assert time.monotonic() - killed_at < ttl + 5, "the dead holder's slot did not come back"
            time.sleep(0.05)
        print(f"\nslot of a killed holder back after {time.monotonic() - killed_at:.2f} s (lease {ttl} s)")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
