"""The demo fund's index program (examples/fund_index/build_index.py) against a fresh demo server.

The program is run as a fund would run it, with the virtualenv's Python and nothing of the
platform's on its path: twice through the API (the second run also saves the versions file), and
once on the demo store's Parquet files with that versions file. Each test checks one property of
what it wrote against what the API itself says: market_daily's trading days, and each dataset's
versions with their publication times.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import requests
from live_demo import run_partner_program, start_demo_server

from testenv import REPO_DIR

pytestmark = pytest.mark.slow

PROGRAM = REPO_DIR / "examples" / "fund_index" / "build_index.py"
TOP = 30
CAP = 0.10
START, END = "2023-03", "2025-12"
DATASETS = ("company_consumption_monthly", "market_daily")


def _run_program(root: Path, *arguments: str) -> None:
    run_partner_program(
        PROGRAM,
        *("--top", str(TOP), "--cap", str(CAP), "--start", START, "--end", END),
        *arguments,
        cwd=root,  # not the checkout: the program needs nothing of the platform
    )


def _api_session(base: str, partner: dict) -> requests.Session:
    token = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "catalog:read query"},
        auth=(partner["client_id"], partner["client_secret"]),
        timeout=30,
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _versions(session: requests.Session, base: str, slug: str) -> dict[int, datetime]:
    found, url = {}, f"{base}/api/v1/datasets/{slug}/versions?page_size=100"
    while url:
        response = session.get(url, timeout=60)
        response.raise_for_status()
        page = response.json()
        found.update({item["number"]: datetime.fromisoformat(item["created_at"]) for item in page["results"]})
        url = page["next"]
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The demo server (its 100 companies: TOP is less than that), the program's runs against it, and what
    the API says about the data."""
    root = tmp_path_factory.mktemp("fund-demo")
    with start_demo_server(root) as demo:
        credentials = str(demo.data_dir / "demo-credentials.json")
        first, second, local = root / "first", root / "second", root / "local"
        saved_versions = root / "versions.json"
        _run_program(root, "--base-url", demo.base, "--credentials", credentials, "--out", str(first))
        _run_program(
            root,
            *("--base-url", demo.base, "--credentials", credentials),
            *("--out", str(second), "--save-versions", str(saved_versions)),
        )
        _run_program(
            root,
            *("--local-store", str(demo.data_dir / "store"), "--versions", str(saved_versions), "--out", str(local)),
        )

        session = _api_session(demo.base, demo.partner("fund_company"))
        days = session.post(
            f"{demo.base}/api/v1/query",
            json={"sql": "SELECT DISTINCT date FROM market_daily ORDER BY date", "format": "json"},
            timeout=60,
        )
        days.raise_for_status()
        yield SimpleNamespace(
            first=first,
            second=second,
            local=local,
            levels=pd.read_csv(first / "levels.csv"),
            constituents=pd.read_csv(first / "constituents.csv"),
            trading_days=[date.fromisoformat(row[0]) for row in days.json()["rows"]],
            versions={slug: _versions(session, demo.base, slug) for slug in DATASETS},
        )


def _rebalance_days(run) -> list[date]:
    return sorted(date.fromisoformat(day) for day in run.constituents["rebalance_date"].unique())


def test_rebalances_fall_on_the_fifth_trading_day_of_every_month(run):
    fifth = {}
    for day in run.trading_days:
        fifth.setdefault((day.year, day.month), []).append(day)
    expected = [days[4] for (year, month), days in sorted(fifth.items()) if START <= f"{year}-{month:02d}" <= END]
    assert _rebalance_days(run) == expected


def test_there_is_one_level_per_trading_day_from_the_first_rebalance_to_the_last_trading_day(run):
    first = _rebalance_days(run)[0]
    expected = [day.isoformat() for day in run.trading_days if day >= first]
    assert run.levels["date"].tolist() == expected
    assert run.levels["level"].iloc[0] == 1000.0
    assert run.levels["benchmark_level"].iloc[0] == 1000.0
    assert run.levels[["level", "level_equal", "benchmark_level"]].notna().all().all()


def test_constituents_change_only_on_rebalance_dates(run):
    held = {day: set(group["ticker"]) for day, group in run.constituents.groupby("rebalance_date")}
    rebalances = sorted(held)
    current = None
    for day, count in zip(run.levels["date"], run.levels["constituents"], strict=True):
        if day in held:
            current = day
        assert count == len(held[current]), (
            f"{day} holds {count} names, its rebalance ({current}) chose {len(held[current])}"
        )
    changes = [
        later for earlier, later in zip(rebalances, rebalances[1:], strict=False) if held[earlier] != held[later]
    ]
    assert changes, "the selection never changed: the score does not move"


def test_weights_sum_to_one_respect_the_cap_and_hold_at_most_n_names(run):
    for day, group in run.constituents.groupby("rebalance_date"):
        assert len(group) <= TOP, day
        assert group["ticker"].is_unique, day
        for column in ("weight", "weight_equal"):
            assert abs(group[column].sum() - 1) <= 1e-9, (day, column)
        if len(group) * CAP >= 1:
            assert group["weight"].max() <= CAP + 1e-12, day
        assert (group["weight"] > 0).all(), day


def test_no_version_read_for_a_rebalance_was_published_after_it(run):
    for (day, as_of, used), _ in run.constituents.groupby(["rebalance_date", "as_of", "versions_used"]):
        moment = datetime.fromisoformat(as_of)
        assert moment == datetime.fromisoformat(f"{day}T15:00:00+08:00")
        read = dict(item.split("=") for item in used.split(";"))
        assert set(read) == set(DATASETS), used
        for slug, number in read.items():
            published = run.versions[slug]
            assert published[int(number)] <= moment, f"{day}: {slug} v{number} was published after {as_of}"
            newer = [n for n, at in published.items() if at <= moment and n > int(number)]
            assert not newer, f"{day}: {slug} v{number} was read though v{max(newer)} was published by {as_of}"


def test_the_published_times_written_are_the_apis(run):
    for published_at, used in (
        run.constituents[["published_at", "versions_used"]].drop_duplicates().itertuples(index=False)
    ):
        numbers = dict(item.split("=") for item in used.split(";"))
        for item in published_at.split(";"):
            slug, moment = item.split("=", 1)
            assert datetime.fromisoformat(moment) == run.versions[slug][int(numbers[slug])]


def test_a_second_run_writes_the_same_levels_and_constituents(run):
    for name in ("levels.csv", "constituents.csv"):
        assert (run.first / name).read_bytes() == (run.second / name).read_bytes(), name


def test_the_local_parquet_files_give_the_same_results_as_the_api(run):
    for name in ("levels.csv", "constituents.csv"):
        assert (run.first / name).read_bytes() == (run.local / name).read_bytes(), name


def test_the_summary_and_the_chart_are_written(run):
    summary = json.loads((run.first / "summary.json").read_text())
    assert summary["rebalances"] == len(_rebalance_days(run))
    assert summary["start"] == run.levels["date"].iloc[0] and summary["end"] == run.levels["date"].iloc[-1]
    for name in ("index", "index_equal_weight", "benchmark"):
        assert summary[name]["final_level"] == pytest.approx(
            run.levels[
                {"index": "level", "index_equal_weight": "level_equal", "benchmark": "benchmark_level"}[name]
            ].iloc[-1]
        )
    assert (run.first / "index.png").read_bytes().startswith(b"\x89PNG")
