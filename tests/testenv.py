"""Environment for the test run, set before Django's settings load (imported first by conftest.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEST_DATA_DIR = Path(tempfile.mkdtemp(prefix="vitamin-test-"))
os.environ["VITAMIN_DATA_DIR"] = str(TEST_DATA_DIR)
os.environ.setdefault("VITAMIN_LOG_FORMAT", "text")
os.environ.setdefault("VITAMIN_LOG_LEVEL", "WARNING")
for _name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "VITAMIN_QUOTA_BACKEND", "VITAMIN_STORE_URL"):
    os.environ.pop(_name, None)
POSTGRES_URL = os.environ.get("VITAMIN_TEST_POSTGRES")
if POSTGRES_URL:
    os.environ["DATABASE_URL"] = POSTGRES_URL
REDIS_URL = os.environ.get("VITAMIN_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("VITAMIN_TEST_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = POSTGRES_URL or "postgres://postgres@127.0.0.1:5432/postgres"

REPO_DIR = Path(__file__).resolve().parents[1]
