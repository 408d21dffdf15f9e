"""deploy/ stays in step with itself and with the code.

deploy/Procfile is the one list of what each process type runs (tests/vitamin/test_topology.py starts
its processes from it); the systemd units must run the same commands, and the environment file may set
only settings the code reads (docs/settings.md) and the few variables Python, the AWS SDK and the
process files read.
"""

from __future__ import annotations

import re
import shlex

import pytest

from testenv import REPO_DIR
from vitamin.env import REGISTRY

DEPLOY = REPO_DIR / "deploy"
UNITS = {
    "release": "vitamin-migrate.service",
    "web": "vitamin-web@.service",
    "worker": "vitamin-worker@.service",
    "beat": "vitamin-beat.service",
}
# Read by Python, Django's entry points, the AWS SDK (pyarrow's S3 file system) and the process files only.
NOT_SETTINGS = {
    "PYTHONPATH",
    "DJANGO_SETTINGS_MODULE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "BIND_ADDRESS",
}
# What every host of a multi-host deployment must share (docs/operations.md, "Deployment: several hosts").
SHARED = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_URL",
    "VITAMIN_QUOTA_BACKEND",
    "VITAMIN_STORE_URL",
    "DJANGO_SECRET_KEY_FILE",
    "VITAMIN_PSEUDONYM_KEY_FILE",
}
_VARIABLE = re.compile(r"\$\{\w+(:-[^}]*)?\}|%[a-zA-Z]")


def procfile() -> dict[str, list[str]]:
    lines = (line for line in (DEPLOY / "Procfile").read_text().splitlines() if line and not line.startswith("#"))
    return {kind: shlex.split(command) for kind, command in (line.split(":", 1) for line in lines)}


def unit_command(unit: str) -> list[str]:
    text = (DEPLOY / "systemd" / unit).read_text().replace("\\\n", " ")
    (command,) = re.findall(r"^ExecStart=(.*)$", text, re.M)
    return shlex.split(command)


def same_argument(ours: str, theirs: str) -> bool:
    """Equal, or both made by the process manager (a `${VARIABLE}` or a systemd `%` specifier) where the
    values are the host's to choose."""
    return ours == theirs or bool(_VARIABLE.search(ours) and _VARIABLE.search(theirs))


@pytest.mark.parametrize("kind", sorted(UNITS))
def test_each_systemd_unit_runs_what_the_procfile_runs(kind):
    program, *arguments = unit_command(UNITS[kind])
    expected = procfile()[kind]
    assert program == "/opt/vitamin/.venv/bin/python" and expected[0] == "python"
    assert len(arguments) == len(expected) - 1, (arguments, expected)
    differing = [(a, b) for a, b in zip(arguments, expected[1:], strict=True) if not same_argument(a, b)]
    assert not differing, differing


def test_every_procfile_process_type_has_a_unit():
    assert set(procfile()) == set(UNITS)


def test_the_environment_file_sets_only_known_variables_and_everything_hosts_share():
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (DEPLOY / "vitamin.env.example").read_text(), re.M))
    unknown = names - set(REGISTRY) - NOT_SETTINGS
    assert not unknown, f"not settings the code reads (docs/settings.md): {sorted(unknown)}"
    assert SHARED <= names, sorted(SHARED - names)


def test_the_units_read_only_variables_the_environment_file_sets():
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (DEPLOY / "vitamin.env.example").read_text(), re.M))
    for unit in UNITS.values():
        used = set(re.findall(r"\$\{(\w+)\}", (DEPLOY / "systemd" / unit).read_text()))
        assert used <= names, (unit, sorted(used - names))
