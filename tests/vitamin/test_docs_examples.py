"""Every shell and Python example in README.md and docs/*.md runs, as written, against a live demo server.

The server is what `make run` gives on a fresh checkout, in a data directory of its own:
`manage.py migrate`, `manage.py bootstrap` (the demo partners and their credentials file, the
`demo` plan, the demo datasets built from a few thousand source rows, the demo subscriptions),
then `manage.py run` (gunicorn, a Celery worker and beat) on a free port (tests/live_demo.py).

An example is changed in its host and credentials only. `http://localhost:8000` becomes the
server's URL; the environment holds `CLIENT_ID` and `CLIENT_SECRET`, the demo fund company's
client from the credentials file. Examples that need other credentials name them, and get them
fresh from the test: `INITIAL_ACCESS_TOKEN` (dynamic client registration), `REFRESH_TOKEN` and
`ACCESS_TOKEN` (one grant of a tool acting for bob, the fund's analyst: `CLIENT_ID` and
`CLIENT_SECRET` are then the tool's), and a `private.pem` file (a private_key_jwt client of the
fund: `CLIENT_ID` is then that client's).

Each example runs in a directory of its own that looks like the checkout after `make run`
(links to the repository's files, `var/` the server's data directory, the virtualenv first on
PATH as after `. .venv/bin/activate`), so what it writes is thrown away. Shell examples run
under `bash -euo pipefail`, with `curl` failing on HTTP errors (`--fail-with-body`), so a failed
request fails the example; Python examples run with the test's interpreter and check their
responses themselves. Lines of a ```console block that start with `$ ` are its commands.

A block that is not meant to run as written (`make run` itself, output listings, production
configuration, sketches of internal APIs) says so in its info string: ```sh no-run. Every other
sh/bash/shell/console/python/py block is one test case here, named by file and line, and
`test_every_example_is_run_or_marked_no_run` fails when one is left out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from joserfc.jwk import RSAKey
from live_demo import DEMO_TRANSACTIONS, DemoServer, start_demo_server

from testenv import REPO_DIR

pytestmark = pytest.mark.slow

DOC_FILES = [REPO_DIR / "README.md", *sorted((REPO_DIR / "docs").glob("*.md"))]
RUNNABLE = {"sh", "bash", "shell", "console", "python", "py"}
NO_RUN = "no-run"
PLACEHOLDER_URL = "http://localhost:8000"
EXAMPLE_TIMEOUT = 120
SHELL_PRELUDE = 'curl() { command curl --fail-with-body "$@"; }\n'

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    flags: tuple[str, ...]
    code: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.language in RUNNABLE and NO_RUN not in self.flags


def fenced_blocks(text: str, name: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, indented ones (in list items) included."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        start, indent, fence = index + 1, len(opening["indent"]), opening["fence"]
        words = opening["info"].split()
        body, index = [], index + 1
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            line = lines[index]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            index += 1
        else:
            raise AssertionError(f"{name}:{start}: a code block is never closed")
        language = words[0].lower() if words else ""
        blocks.append(Block(name, start, language, tuple(words[1:]), "\n".join(body) + "\n"))
        index += 1
    return blocks


ALL_BLOCKS = [
    block
    for path in DOC_FILES
    for block in fenced_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_DIR)))
]
EXAMPLES = [block for block in ALL_BLOCKS if block.runnable]


# --- coverage: no example escapes -------------------------------------------------------------

# How a shell command starts: a bare ``` block beginning like this should say it is sh.
_COMMAND_START = re.compile(r"^(\$ |curl |make |\.venv/|python[0-9.]* |export |pip |cd )")


def test_every_example_is_run_or_marked_no_run():
    # Counted again without the parser: every opening fence of a runnable language is a test case or no-run.
    expected = set()
    for path in DOC_FILES:
        inside = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fence = re.match(r"^ *(`{3,})\s*(\S*)(.*)$", line)
            if not fence:
                continue
            if inside is None:
                inside = fence[1]
                if fence[2].lower() in RUNNABLE and NO_RUN not in fence[3].split():
                    expected.add(f"{path.relative_to(REPO_DIR)}:{number}")
            elif fence[1].startswith(inside) and not fence[2] and not fence[3].strip():
                inside = None
    assert {block.id for block in EXAMPLES} == expected
    unlabelled = [block.id for block in ALL_BLOCKS if not block.language and _COMMAND_START.match(block.code.lstrip())]
    assert not unlabelled, f"blocks of shell commands without a language (```sh, or ```sh no-run): {unlabelled}"
    assert all(block.language in RUNNABLE for block in ALL_BLOCKS if NO_RUN in block.flags), "no-run on a non-example"


def test_blocks_and_console_commands_are_read_as_written():
    text = (
        "1. A step:\n\n   ```sh\n   curl -s http://localhost:8000/healthz \\\n     -o /dev/null\n   ```\n\n"
        "```sh no-run\nmake run\n```\n\n````console\n$ echo one \\\n  two\none two\n$ true\n```\n````\n"
    )
    indented, marked, console = fenced_blocks(text, "x.md")
    assert (indented.line, indented.language, indented.runnable) == (3, "sh", True)
    assert indented.code == "curl -s http://localhost:8000/healthz \\\n  -o /dev/null\n"
    assert (marked.flags, marked.runnable) == (("no-run",), False)
    assert console.code.endswith("$ true\n```\n")
    assert console_commands(console.code) == "echo one \\\n  two\ntrue\n"


def test_the_docs_have_examples_to_run():
    assert len(EXAMPLES) >= 10
    assert {"docs/query.md", "docs/oauth.md"} <= {block.path for block in EXAMPLES}


# --- the demo server ----------------------------------------------------------------------------

SETUP = """
import json, os, sys
from datetime import timedelta

from django.utils import timezone

sys.path.append(os.environ["DOCS_TESTS_DIR"])
from partner_support import add_member, make_client, make_tool_client, make_user

from institutions.credit_code import check_character
from institutions.models import Institution, Role
from oauth import credentials
from oauth.clients import issue_registration_token
from oauth.demo import DEMO_PARTNERS
from oauth.models import AuthMethod, GrantType, Token

wanted = json.loads(os.environ["DOCS_SETUP"])
code = DEMO_PARTNERS[0]["credit_code"]
fund = Institution.objects.get(credit_code=code + check_character(code))
alice, bob = make_user("alice@fund.example"), make_user("bob@fund.example")
add_member(fund, alice, Role.OWNER)
add_member(fund, bob, Role.ANALYST)
tool, tool_secret = make_tool_client(fund)
now = timezone.now()
grants = []
for _ in range(wanted["grants"]):
    access = credentials.new_secret(credentials.ACCESS_TOKEN_PREFIX)
    refresh = credentials.new_secret(credentials.REFRESH_TOKEN_PREFIX)
    Token.objects.create(
        client=tool, user=bob, grant_type=GrantType.AUTHORIZATION_CODE, scope="catalog:read query",
        access_token_hash=credentials.hash_secret(access), refresh_token_hash=credentials.hash_secret(refresh),
        access_expires_at=now + timedelta(hours=1), refresh_expires_at=now + timedelta(days=1),
    )
    grants.append({"ACCESS_TOKEN": access, "REFRESH_TOKEN": refresh})
initial = [issue_registration_token(fund, scope="catalog:read query", by=alice) for _ in range(wanted["initial"])]
signed, _ = make_client(fund, name="Signed client", auth_method=AuthMethod.PRIVATE_KEY_JWT, jwks=wanted["jwks"])
print("DOCS-SETUP " + json.dumps({
    "tool": {"CLIENT_ID": tool.client_id, "CLIENT_SECRET": tool_secret},
    "grants": grants,
    "initial": initial,
    "signed": {"CLIENT_ID": signed.client_id},
}))
"""


def _needing(name: str) -> int:
    return sum(name in block.code for block in EXAMPLES)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A fresh install's demo server, and the credentials the examples may use."""
    key = RSAKey.generate_key(2048)
    wanted = {
        "grants": _needing("REFRESH_TOKEN"),
        "initial": _needing("INITIAL_ACCESS_TOKEN"),
        "jwks": {"keys": [key.as_dict(private=False)]},
    }
    made = {}

    def add_docs_credentials(server: DemoServer) -> None:
        output = server.manage(
            "shell",
            "-v",
            "0",
            "-c",
            SETUP,
            extra={"DOCS_SETUP": json.dumps(wanted), "DOCS_TESTS_DIR": str(REPO_DIR / "tests")},
        )
        line = next(line for line in output.splitlines() if line.startswith("DOCS-SETUP "))
        made.update(json.loads(line[len("DOCS-SETUP ") :]))

    root = tmp_path_factory.mktemp("docs-demo")
    with start_demo_server(root, transactions=DEMO_TRANSACTIONS, before_run=add_docs_credentials) as server:
        fund = server.partner("fund_company")
        yield SimpleNamespace(
            base=server.base,
            env=server.env,
            data_dir=server.data_dir,
            log=server.log,
            fund={"CLIENT_ID": fund["client_id"], "CLIENT_SECRET": fund["client_secret"]},
            tool=made["tool"],
            grants=made["grants"],
            initial=made["initial"],
            signed=made["signed"],
            private_pem=key.as_pem(private=True),
        )


@pytest.fixture
def checkout(tmp_path, demo) -> Path:
    """A working directory that looks like the checkout after `make run`, where an example may write."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    for entry in REPO_DIR.iterdir():
        if entry.name not in ("var", ".git"):
            (folder / entry.name).symlink_to(entry)
    (folder / "var").symlink_to(demo.data_dir)
    return folder


def example_environment(block: Block, demo, folder: Path) -> dict[str, str]:
    """The server's environment with the virtualenv on PATH and the credentials this example uses."""
    env = {**demo.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update(demo.fund)
    if "REFRESH_TOKEN" in block.code:
        env.update(demo.tool)
        env.update(demo.grants.pop())
    if "INITIAL_ACCESS_TOKEN" in block.code:
        env["INITIAL_ACCESS_TOKEN"] = demo.initial.pop()
    if "private.pem" in block.code:
        (folder / "private.pem").write_bytes(demo.private_pem)
        env.pop("CLIENT_SECRET")
        env.update(demo.signed)
    return env


def console_commands(code: str) -> str:
    """The commands of a console transcript: lines after `$ `, with their backslash continuations."""
    commands, continued = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or continued:
            commands.append(line[2:] if line.startswith("$ ") and not continued else line)
            continued = line.endswith("\\")
    return "\n".join(commands) + "\n"


@pytest.mark.parametrize("block", EXAMPLES, ids=[block.id for block in EXAMPLES])
def test_example(block: Block, demo, checkout: Path):
    for tool in ("curl", "jq"):
        if re.search(rf"\b{tool} ", block.code) and not shutil.which(tool):
            pytest.fail(f"{block.id} needs {tool} on PATH (apt-get install {tool})")
    code = block.code.replace(PLACEHOLDER_URL, demo.base)
    env = example_environment(block, demo, checkout)
    if block.language in ("python", "py"):
        script = checkout / f"example_{Path(block.path).stem}_{block.line}.py"
        script.write_text(code, encoding="utf-8")
        argv = [sys.executable, script.name]
    else:
        script_text = console_commands(code) if block.language == "console" else code
        argv = ["bash", "-euo", "pipefail", "-c", SHELL_PRELUDE + script_text]
    result = subprocess.run(
        argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT, check=False
    )
    assert result.returncode == 0, (
        f"{block.id} ({block.language}) exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-4000:]}\n--- server log\n{demo.log.read_text()[-2000:]}"
    )
