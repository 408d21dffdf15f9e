"""One OS process holding a concurrency slot the way a query does, started by tests/quotas/test_lease_keeper.py.

Protocol: read one JSON job line from stdin; set Django up against the parent's test database (its
settings_dict) and quota backend; reserve one lease of `ttl_seconds` and keep it renewed (quotas.keeper);
print "held"; then sleep until killed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Appended, as manage.py does: platform/ must not shadow the standard library's `platform`.
sys.path.append(str(Path(__file__).resolve().parents[2] / "platform"))


def main() -> None:
    job = json.loads(sys.stdin.readline())
    os.environ["DJANGO_SETTINGS_MODULE"] = "vitamin.settings"
    from django.conf import settings

    settings.DATABASES = {"default": job["database"]}
    settings.QUOTA_BACKEND = job["backend"]
    settings.REDIS_URL = job["redis_url"]
    import django

    django.setup()
    from quotas.keeper import keeper
    from quotas.service import reserve

    lease = reserve(job["subject"], "concurrent_queries", 1, job["ttl_seconds"])
    assert lease is not None, "the slot was taken"
    keeper().keep([lease], job["ttl_seconds"])
    print("held", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
