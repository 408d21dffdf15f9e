"""deploy/ stays in step with itself and with the code.

deploy/Procfile is the one list of what each process type runs (tests/vitamin/test_topology.py starts
its processes from it); the systemd units must run the same commands, and the environment file may set
only settings the code reads (docs/settings.md) and the few variables Python, the AWS SDK and the
process files read.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading

import pytest
import requests
from live_demo import free_port

from testenv import REPO_DIR, REQUIRE_SERVICES
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


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # its own certificate
def test_the_nginx_proxy_spreads_requests_over_the_nodes_and_keeps_tokens_out_of_its_log(tmp_path):
    """deploy/nginx/vitamin.conf, run by nginx as written but for its addresses and certificate, in front
    of two stand-in nodes. Skipped where nginx is not installed (apt-get install nginx-light), except in CI."""
    if shutil.which("nginx") is None:
        if REQUIRE_SERVICES:  # CI installs it (.ci/run)
            pytest.fail("nginx is not installed", pytrace=False)
        pytest.skip("nginx is not installed")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "key.pem",
         "-out", tmp_path / "cert.pem", "-days", "1", "-subj", "/CN=vitamin.example.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    nodes = [_StandIn(name) for name in ("A", "B")]
    https, http = free_port(), free_port()
    conf = (DEPLOY / "nginx" / "vitamin.conf").read_text()
    for old, new in {
        "/etc/ssl/vitamin/fullchain.pem": str(tmp_path / "cert.pem"),
        "/etc/ssl/vitamin/privkey.pem": str(tmp_path / "key.pem"),
        "/var/log/nginx/": f"{tmp_path}/",
        "10.0.1.11:8000": f"127.0.0.1:{nodes[0].port}",
        "10.0.1.12:8000": f"127.0.0.1:{nodes[1].port}",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl;",
        "listen 80;": f"listen 127.0.0.1:{http};",
    }.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "vitamin.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/vitamin.conf; }}\n"
    )
    subprocess.run(["nginx", "-c", tmp_path / "nginx.conf", "-p", tmp_path], check=True, capture_output=True)
    try:
        base = f"https://127.0.0.1:{https}"
        answers = [requests.get(f"{base}/", verify=False, timeout=10).text for _ in range(4)]  # noqa: S501
        assert sorted(answers) == ["A", "A", "B", "B"]
        requests.get(f"{base}/api/v1/job-results/SECRET-TOKEN", verify=False, timeout=10)  # noqa: S501
        plain = requests.get(f"http://127.0.0.1:{http}/x", allow_redirects=False, timeout=10)
        assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    finally:
        os.kill(int((tmp_path / "nginx.pid").read_text()), signal.SIGTERM)
        for node in nodes:
            node.server.shutdown()
    log = (tmp_path / "vitamin.access.log").read_text()
    assert "/api/v1/job-results/<token>" in log
    assert "SECRET-TOKEN" not in log


class _StandIn:
    """An HTTP server answering every GET with its name: a web node, as far as the proxy can tell."""

    def __init__(self, name: str):
        body = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the standard library's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
