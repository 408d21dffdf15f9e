"""The code stays lint-clean and formatted (the same checks as `make lint`)."""

import subprocess
import sys

import pytest

from testenv import REPO_DIR

RUFF = [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("check", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(check):
    result = subprocess.run([*RUFF, *check], cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
