"""The real Delta Sharing connector, run as a partner runs it, for the live Delta Sharing tests.

The connector (`delta-sharing` 1.4.x from PyPI, unmodified) pins pyarrow and requests below the
project's, so it lives in a virtualenv of its own, `.venv/sharing-client/`, that `make test` builds
from requirements-sharing-client.txt. Tests never import it: they hand it a snippet of Python to run
there, in a subprocess (`python -I`), against a live server over real HTTP.

    def test_load(sharing_client, live_server, token):
        profile = bearer_profile(live_server.url, token)
        url = table_url("markets", "stock_attention_daily")  # "#vitamin.markets.stock_attention_daily"
        rows = run_client(
            f'''
            import delta_sharing
            frame = delta_sharing.load_as_pandas(PROFILE + {url!r})
            print(json.dumps(len(frame)))
            ''',
            profile=profile,
        )
        table = client_frame(  # a pyarrow Table, to compare with the published files
            f"import delta_sharing; frame = delta_sharing.load_as_pandas(PROFILE + {url!r})", profile=profile
        )

What a snippet finds defined (a prelude runs first):

- `PROFILE`: the path of a `.share` file holding the `profile` passed in, as JSON; a table URL is
  `PROFILE + "#vitamin.<schema>.<table>"`.
- `OUTPUT`: a directory to write files into (it lives as long as the `workdir` of `run_client`).
- `save_frame(frame, name="frame") -> str`: writes a pandas DataFrame as `OUTPUT/<name>.parquet`
  (no index) and returns that path.
- `json`, `os`, `sys`, already imported.

A snippet answers by printing `json.dumps(value)` as its last line of standard output; `run_client`
returns the decoded value. Anything it prints before is ignored (and shown if the run fails).
`client_frame` is the shortcut for DataFrames: the snippet binds `frame`, and the test gets it back
as a pyarrow Table (read with the project's pyarrow) to compare with the published Parquet. It is
the frame as pandas writes it: strings stay strings, but an integer column with nulls comes back
as float64 and timestamps as nanoseconds, so compare values, not only schemas.

The protocol's facts, as the server serves them:

- Profile version 1 (a bearer token; `bearer_profile`):
  `{"shareCredentialsVersion": 1, "endpoint": "<base>/delta-sharing/", "bearerToken": "...",
  "expirationTime": "..."}`.
- Profile version 2 (OAuth client credentials; `oauth_profile`): `{"shareCredentialsVersion": 2,
  "type": "oauth_client_credentials", "endpoint": "<base>/delta-sharing/", "tokenEndpoint":
  "<base>/oauth/token", "clientId": ..., "clientSecret": ..., "scope": "download"}`.
- One share, `vitamin`; a dataset's schema is its theme, its table's name its slug:
  `PROFILE#vitamin.<theme>.<dataset slug>` (`table_url` takes the schema name as the server
  lists it).

The `sharing_client` fixture (session scope) fails the test, rather than skipping it, when the
virtualenv is missing or holds another connector: run `make test`, which builds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from testenv import REPO_DIR

SHARING_VENV = REPO_DIR / ".venv" / "sharing-client"
SHARING_PYTHON = SHARING_VENV / "bin" / "python"
CONNECTOR_SERIES = "1.4."  # the series requirements-sharing-client.txt pins
SHARE = "vitamin"
DEFAULT_TIMEOUT = 120

# Runs before every snippet, in the client's interpreter: sys.argv[1] is the profile file, sys.argv[2]
# the output directory.
_PRELUDE = """\
import json, os, sys

PROFILE = sys.argv[1]
OUTPUT = sys.argv[2]


def save_frame(frame, name="frame"):
    path = os.path.join(OUTPUT, name + ".parquet")
    frame.to_parquet(path, index=False)
    return path


del sys.argv[1:]
"""


def bearer_profile(base_url: str, token: str, *, expiration_time: str | None = None) -> dict:
    """A version-1 profile: the server at `base_url` (e.g. `live_server.url`) with a bearer token."""
    profile = {
        "shareCredentialsVersion": 1,
        "endpoint": f"{base_url.rstrip('/')}/delta-sharing/",
        "bearerToken": token,
    }
    if expiration_time is not None:
        profile["expirationTime"] = expiration_time
    return profile


def oauth_profile(base_url: str, client_id: str, client_secret: str, *, scope: str = "download") -> dict:
    """A version-2 profile: the connector fetches its own token from `<base>/oauth/token` (client credentials)."""
    base = base_url.rstrip("/")
    return {
        "shareCredentialsVersion": 2,
        "type": "oauth_client_credentials",
        "endpoint": f"{base}/delta-sharing/",
        "tokenEndpoint": f"{base}/oauth/token",
        "clientId": client_id,
        "clientSecret": client_secret,
        "scope": scope,
    }


def table_url(schema: str, table: str) -> str:
    """The part of a table URL after the profile path, for a snippet: `PROFILE + <this>`."""
    return f"#{SHARE}.{schema}.{table}"


def run_client(code: str, *, profile: dict, timeout: float = DEFAULT_TIMEOUT, workdir: Path | None = None) -> Any:
    """Run `code` in the sharing-client venv's Python and return the JSON its last stdout line holds.

    `code` may be indented (it is dedented). `profile` is written to `<workdir>/profile.share`;
    `OUTPUT` is `<workdir>/output`. Without `workdir` both live in a temporary directory removed on
    return, so a test that wants the files the snippet writes passes one (pytest's `tmp_path`).
    A non-zero exit, a timeout or a last line that is not JSON raises AssertionError with the
    client's stderr.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="vitamin-sharing-client-") as folder:
            return run_client(code, profile=profile, timeout=timeout, workdir=Path(folder))
    if not SHARING_PYTHON.exists():
        raise AssertionError(_missing_message())
    workdir.mkdir(parents=True, exist_ok=True)
    profile_path = workdir / "profile.share"
    profile_path.write_text(json.dumps(profile, indent=2), encoding="utf-8")
    output = workdir / "output"
    output.mkdir(exist_ok=True)
    script = workdir / "client.py"
    script.write_text(_PRELUDE + "\n" + textwrap.dedent(code).strip() + "\n", encoding="utf-8")
    command = [str(SHARING_PYTHON), "-I", str(script), str(profile_path), str(output)]
    try:
        result = subprocess.run(
            command, cwd=workdir, env=_environment(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"the sharing client did not finish within {timeout} s\n--- stdout\n{_text(exc.stdout)[-3000:]}"
            f"\n--- stderr\n{_text(exc.stderr)[-6000:]}"
        ) from None
    if result.returncode != 0:
        raise AssertionError(
            f"the sharing client exited with {result.returncode}\n--- stderr\n{result.stderr[-6000:]}"
            f"\n--- stdout\n{result.stdout[-2000:]}"
        )
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(
            "the sharing client's last line of output is not JSON (end the snippet with print(json.dumps(...)))"
            f"\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-4000:]}"
        ) from None


def client_frame(code: str, *, profile: dict, timeout: float = DEFAULT_TIMEOUT) -> pa.Table:
    """The pandas DataFrame a snippet binds to `frame`, as a pyarrow Table read with the project's pyarrow."""
    epilogue = "\nprint(json.dumps(save_frame(frame)))\n"
    with tempfile.TemporaryDirectory(prefix="vitamin-sharing-client-") as folder:
        path = run_client(textwrap.dedent(code) + epilogue, profile=profile, timeout=timeout, workdir=Path(folder))
        return pq.read_table(path)


def connector_version() -> str:
    """The version of `delta_sharing` installed in the client venv."""
    return run_client("import delta_sharing\nprint(json.dumps(delta_sharing.__version__))", profile={}, timeout=60)


def client_problem() -> str | None:
    """What is wrong with the client venv, said so that the reader knows what to run; None when it is fine."""
    if not SHARING_PYTHON.exists():
        return _missing_message()
    try:
        version = connector_version()
    except AssertionError as exc:
        return f"the sharing-client venv does not run delta_sharing: run `make test` to rebuild it\n{exc}"
    if not str(version).startswith(CONNECTOR_SERIES):
        return (
            f"{SHARING_VENV} has delta-sharing {version}, not {CONNECTOR_SERIES}x as "
            "requirements-sharing-client.txt pins: run `make test` to rebuild it"
        )
    return None


@pytest.fixture(scope="session")
def sharing_client() -> Path:
    """The client venv's Python, once checked to run the pinned connector; fails (not skips) otherwise."""
    problem = client_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return SHARING_PYTHON


def _missing_message() -> str:
    return (
        f"the Delta Sharing client venv is missing ({SHARING_PYTHON} does not exist): run `make test`, "
        "which builds it from requirements-sharing-client.txt"
    )


def _environment() -> dict[str, str]:
    """The test's environment, with local servers kept off any proxy (the connector honours *_proxy)."""
    env = dict(os.environ)
    local = "127.0.0.1,localhost,::1"
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = f"{env[name]},{local}" if env.get(name) else local
    return env


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
