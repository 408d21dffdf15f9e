"""The portal's SQL workbench against the API on the same query, both over HTTP from one live gunicorn.

    .venv/bin/python bench/bench_workbench.py --rows 1000000

Sets up what bench_query_api does (card_transactions-like rows as version 1 of an open dataset, an
institution with an approved subscription and a bearer token), adds a portal user who is an analyst of
that institution with a signed-in session, and times, alternately:

- workbench page:     GET /workbench/ (schema panel, history, saved queries), against GET /healthz
- 1,000 rows shown:   POST /workbench/ running a 1,000-row query, the page with its grid and chart data,
                      against POST /api/v1/query with the same SQL as JSON (goal: the page adds ≤ 50 ms)

Both runs of a query are real ones: authenticated, granted, charged and audited.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from urllib.parse import urlencode

import figures
from bench_query_api import QUERY_PATH, REPO, SLUG, free_port, server_environment, setup, start_server
from bench_query_engine import generate, medians_ms
from http_client import KeepAlive

ROWS_SHOWN = 1000
PAGE_GOAL_MS = 50  # what the workbench page may add to the same query through the API
ROWS_SQL = f"SELECT province, month, category, channel, amount FROM {SLUG} LIMIT {ROWS_SHOWN}"

# A portal user, analyst of the institution bench_query_api's SETUP made, signed in: prints its session key.
SETUP_USER = textwrap.dedent(
    """
    from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from institutions.models import Institution, Member, Role

    user = get_user_model().objects.create_user(username="analyst@bench.example", email="analyst@bench.example",
                                                password="bench password 123")
    Member.objects.create(user=user, institution=Institution.objects.get(legal_name="Bench Fund"), role=Role.ANALYST)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print("SESSION=" + session.session_key)
    """
)


def signed_in_session(env: dict[str, str]) -> str:
    output = subprocess.run(  # noqa: S603
        [sys.executable, str(REPO / "manage.py"), "shell", "-c", SETUP_USER],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line[len("SESSION=") :] for line in output.splitlines() if line.startswith("SESSION="))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-workbench-"))
    data_dir = work / "data"
    folder = data_dir / "store" / "datasets" / SLUG / "v1"
    folder.mkdir(parents=True)
    generate(args.rows, folder)
    env = server_environment(data_dir, None)
    env["VITAMIN_WORKBENCH_ROWS"] = str(ROWS_SHOWN)
    token = setup(env, folder)
    session = signed_in_session(env)
    port = free_port()
    server = start_server(env, port)
    base_url = f"http://127.0.0.1:{port}"
    print(f"{args.rows:,} rows; median of {args.repeat}", flush=True)
    try:
        api = KeepAlive(base_url, {"Authorization": f"Bearer {token}"})
        health = KeepAlive(base_url)
        portal = KeepAlive(base_url, {"Cookie": f"sessionid={session}"})
        status, _ = portal.get("/workbench/")
        if status != 200:
            raise SystemExit(f"the workbench answered {status}")
        # A CSRF secret of our own, as cookie and form field (Django accepts the unmasked secret in the form).
        csrf = secrets.token_hex(16)
        form = urlencode({"csrfmiddlewaretoken": csrf, "sql": ROWS_SQL}).encode()
        form_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"sessionid={session}; csrftoken={csrf}",
            "Referer": base_url + "/workbench/",
        }

        def page_get() -> None:
            status, _ = portal.get("/workbench/")
            assert status == 200, status

        def page_run() -> None:
            status, body = portal.request("POST", "/workbench/", form, form_headers)
            assert status == 200, (status, body[-500:])
            assert body.count(b"<tr>") >= ROWS_SHOWN, "the page did not show the rows"

        def api_run() -> None:
            status, size = api.post_json(QUERY_PATH, {"sql": ROWS_SQL, "format": "json"}, count_only=True)
            assert status == 200, status

        ours, raw = medians_ms(page_get, lambda: health.get("/healthz"), repeat=args.repeat)
        figures.record("workbench page (raw: /healthz)", ours, raw, "ms")
        print(f"workbench page: ours {ours:.1f} ms, raw {raw:.1f} ms (/healthz), ratio {ours / raw:.2f}")
        ours, raw = medians_ms(page_run, api_run, repeat=args.repeat)
        added = ours - raw
        met = added <= PAGE_GOAL_MS
        figures.record(
            f"1,000 rows in the workbench (raw: the API, JSON); adds {added:.1f} ms",
            ours,
            raw,
            "ms",
            goal=f"adds ≤ {PAGE_GOAL_MS} ms",
            met=met,
        )
        print(
            f"1,000 rows shown: ours {ours:.1f} ms, raw {raw:.1f} ms (the API), ratio {ours / raw:.2f}, "
            f"adds {added:.1f} ms (goal ≤ {PAGE_GOAL_MS} ms: {'met' if met else 'not met'})"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
