"""docs/query.md stays true to the code: every error code and format is documented; the engine has no Django."""

from __future__ import annotations

import re
import subprocess
import sys

from query.errors import Code
from query.formats import MEDIA_TYPES
from testenv import REPO_DIR

DOC = (REPO_DIR / "docs" / "query.md").read_text()
ENGINE = REPO_DIR / "platform" / "query"
# The engine: plain Python, usable from Celery and tested alone. The app's Django side
# (models, views, service, jobs, ...) lives next to it and may import Django.
ENGINE_MODULES = (
    "aggregate_rules",
    "bindings",
    "checker",
    "errors",
    "formats",
    "functions",
    "gateway",
    "parser",
    "rekey",
    "results",
    "sandbox",
    "watchdog",
)


def test_every_error_code_is_documented():
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?:rejected|failed) \|", DOC, re.M))
    assert documented == {code.value for code in Code}


def test_every_format_is_documented_with_its_media_type():
    for name, media_type in MEDIA_TYPES.items():
        assert f"| `{name}` | `{media_type}` |" in DOC


def test_the_engine_never_imports_django():
    for module in ENGINE_MODULES:
        text = (ENGINE / f"{module}.py").read_text()
        assert "import django" not in text and "from django" not in text, module
    imports = ", ".join(f"query.{module}" for module in ENGINE_MODULES)
    probe = f"import sys, {imports}; assert not any(m.startswith('django') for m in sys.modules)"
    env_path = f"{REPO_DIR}:{REPO_DIR / 'platform'}"
    subprocess.run([sys.executable, "-c", probe], check=True, env={"PYTHONPATH": env_path}, cwd=REPO_DIR)
