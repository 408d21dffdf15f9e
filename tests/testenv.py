"""Environment for the test run, set before Django's settings load.

Loaded as a pytest plugin (`-p tests.testenv` in pyproject.toml), which pytest
imports before pytest-django reads the settings. Tests also import it as
`testenv`; the data directory is kept in the environment so both agree.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

if "VITAMIN_TEST_RUN_DIR" not in os.environ:
    os.environ["VITAMIN_TEST_RUN_DIR"] = tempfile.mkdtemp(prefix="vitamin-test-")
TEST_DATA_DIR = Path(os.environ["VITAMIN_TEST_RUN_DIR"])
os.environ["VITAMIN_DATA_DIR"] = str(TEST_DATA_DIR)
os.environ.setdefault("VITAMIN_LOG_FORMAT", "text")
os.environ.setdefault("VITAMIN_LOG_LEVEL", "WARNING")
for _name in (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "VITAMIN_QUOTA_BACKEND",
    "VITAMIN_STORE_URL",
):
    os.environ.pop(_name, None)
POSTGRES_URL = os.environ.get("VITAMIN_TEST_POSTGRES")
if POSTGRES_URL:
    os.environ["DATABASE_URL"] = POSTGRES_URL
REDIS_URL = os.environ.get("VITAMIN_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("VITAMIN_TEST_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = POSTGRES_URL or "postgres://postgres@127.0.0.1:5432/postgres"

REPO_DIR = Path(__file__).resolve().parents[1]
