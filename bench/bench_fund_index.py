"""The fund index example end to end through the API against the same computation on the store's local Parquet files.

    .venv/bin/python bench/bench_fund_index.py --rows 1000000

Bootstraps the demo in a temporary VITAMIN_DATA_DIR as `make run` does (`manage.py migrate` and
`bootstrap`, with --rows source transactions: the demo fund partner, its subscriptions, and the
monthly versions of company_consumption_monthly and market_daily with their publication times),
then starts a real multi-process gunicorn on a free 127.0.0.1 port (as bench_query_api.py does).

examples/fund_index/build_index.py is imported and its `main()` called in this process, so neither
side pays an interpreter start or the imports; both write every output (CSV files, the chart, the
summary). Over 3 years of monthly rebalances (2023-03 to 2025-12) of the demo universe:

- ours: through the API, as the fund runs it: an OAuth token, two `as_of` queries per rebalance
  (Arrow streams) plus one for the daily total returns, the versions lists;
- raw: the same program on the published Parquet files of the same store, with the versions file
  that an API run saved (`--local-store`, `--versions`): the same computation without the platform.

The two runs must write the same levels.csv and constituents.csv, or the benchmark stops.
Each line reads `name: ours X s, raw Y s, ratio Z`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import figures
from bench_query_api import free_port, server_environment, start_server

REPO = Path(__file__).resolve().parents[1]
PROGRAM = REPO / "examples" / "fund_index" / "build_index.py"
START, END = "2023-03", "2025-12"


def load_program():
    spec = importlib.util.spec_from_file_location("build_index", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def bootstrap(env: dict[str, str]) -> None:
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True)  # noqa: S603
    # The embedded e-mail backend prints the demo partners' approval mails on stderr: keep them for a failure only.
    done = subprocess.run([*manage, "bootstrap"], env=env, capture_output=True, text=True)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"bootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def timed(run, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    run(out)
    return time.perf_counter() - started


def same_outputs(first: Path, second: Path) -> None:
    for name in ("levels.csv", "constituents.csv"):
        if (first / name).read_bytes() != (second / name).read_bytes():
            raise SystemExit(f"the API and the local files gave different {name}: see {first} and {second}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="demo source transactions (make run: 1,000,000)")
    parser.add_argument(
        "--companies", type=int, default=1000, help="listed companies in the demo universe (make run: 1,000)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=100)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-fund-index-"))
    data_dir = work / "data"
    server = None
    try:
        env = server_environment(data_dir, None)
        env["VITAMIN_DEMO_TRANSACTIONS"] = str(args.rows)
        env["VITAMIN_DEMO_COMPANIES"] = str(args.companies)
        started = time.perf_counter()
        bootstrap(env)
        print(
            f"demo bootstrapped ({args.rows:,} transactions, {args.companies} companies) in "
            f"{time.perf_counter() - started:.1f} s; median of {args.repeat}",
            flush=True,
        )
        port = free_port()
        server = start_server(env, port)

        program = load_program()
        common = ["--top", str(args.top), "--start", START, "--end", END]
        credentials = str(data_dir / "demo-credentials.json")
        versions = work / "versions.json"
        base = f"http://127.0.0.1:{port}"

        def through_api(out: Path) -> None:
            program.main(["--base-url", base, "--credentials", credentials, "--out", str(out), *common])

        def on_local_files(out: Path) -> None:
            program.main(
                ["--local-store", str(data_dir / "store"), "--versions", str(versions), "--out", str(out), *common]
            )

        # Warm-up, and the versions file the local runs use; then the two must agree.
        program.main(
            [
                "--base-url",
                base,
                "--credentials",
                credentials,
                "--out",
                str(work / "api"),
                "--save-versions",
                str(versions),
                *common,
            ]
        )
        on_local_files(work / "local")
        same_outputs(work / "api", work / "local")
        rebalances = json.loads((work / "api" / "summary.json").read_text())["rebalances"]

        ours, raw = [], []
        for _ in range(args.repeat):  # alternating, so drift on a shared machine hits both alike
            ours.append(timed(through_api, work / "api"))
            raw.append(timed(on_local_files, work / "local"))
        same_outputs(work / "api", work / "local")
        ours_s, raw_s = statistics.median(ours), statistics.median(raw)
        name = (
            f"fund index, {rebalances} monthly rebalances, {args.companies} companies, end to end (raw: local Parquet)"
        )
        print(f"{name}: ours {ours_s:.2f} s, raw {raw_s:.2f} s, ratio {ours_s / raw_s:.2f}", flush=True)
        figures.record(name, ours_s, raw_s, "s")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
