"""One OS process competing for a quota, started by tests/quotas/test_quota_contention.py.

Protocol on stdin/stdout: read one JSON job line; set Django up against the
parent's test database (its settings_dict); print "ready"; wait for a "go"
line so all workers start together; try to consume and to reserve; print one
JSON line with what was granted.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

# Appended, as manage.py does: platform/ must not shadow the standard library's `platform`.
sys.path.append(str(Path(__file__).resolve().parents[2] / "platform"))


def main() -> None:
    job = json.loads(sys.stdin.readline())
    os.environ["DJANGO_SETTINGS_MODULE"] = "vitamin.settings"
    from django.conf import settings

    settings.DATABASES = {"default": job["database"]}
    settings.TIME_ZONE = job["time_zone"]
    import django

    django.setup()
    from quotas.service import DatabaseBackend, RedisBackend, Window, consume, reserve

    backend = RedisBackend(job["redis_url"]) if job["redis_url"] else DatabaseBackend()
    now = datetime.fromisoformat(job["now"])
    print("ready", flush=True)
    sys.stdin.readline()

    consumed = [
        consume(job["subject"], "queries", 1, job["limit"], Window.DAY, backend=backend, now=now).allowed
        for _ in range(job["attempts"])
    ]
    leases = [
        reserve(job["subject"], "concurrent_queries", job["lease_limit"], 60, backend=backend, now=now)
        for _ in range(job["lease_attempts"])
    ]
    print(json.dumps({"consumed": sum(consumed), "leases": sum(lease is not None for lease in leases)}), flush=True)


if __name__ == "__main__":
    main()
