"""Build time and peak memory of `card_transactions` against raw DuckDB writing the same source rows to Parquet.

Both sides read the same synthetic transaction stream (same rows, seed and
consumer population) in a fresh child process; the raw side only copies it to
one zstd Parquet file, the build also generalizes, pseudonymizes, suppresses,
validates, checksums and reports. Each side's peak resident memory is the
child's ru_maxrss from wait4(): native memory included (DuckDB, Arrow), which
tracemalloc would miss. Goals: time and peak memory each <= 2.0x raw, at
--rows and at --growth times as many rows; and the build's peak flat as the
rows grow. What a build holds grows with the distinct buyers (their groups and
pseudonyms), never with the rows (docs/datasets.md), so the two are measured
apart: --growth times the rows from the same buyers (the flatness goal), and
--rows from --growth times the buyers (shown, no goal). The synthetic source
draws --rows / 20 buyers unless --consumers says otherwise. Medians over
--repeat runs, the two sides alternating.

    .venv/bin/python bench/bench_build.py              # 10M and 40M rows
    .venv/bin/python bench/bench_build.py --rows 200000 --repeat 3 --growth 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import figures

REPO_DIR = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_DIR / "datasets" / "specs" / "card_transactions.yaml"
THREADS = 2


def default_consumers(rows: int) -> int:
    return max(rows // 20, 1000)


def _variables(rows: int, consumers: int) -> dict[str, int]:
    return {"VITAMIN_DEMO_TRANSACTIONS": rows, "VITAMIN_DEMO_CONSUMERS": consumers}


def run_build(rows: int, consumers: int, work_dir: Path, memory_limit: str) -> dict:
    from datasets.build import build, connector_for
    from datasets.spec import load_spec
    from datasets.storage import Store

    spec = load_spec(SPEC_PATH, _variables(rows, consumers))
    started = time.perf_counter()
    result = build(
        spec,
        connector_for(spec),
        master_key=b"bench-master-key-0123456789abcdef",
        release="bench",
        store=Store.from_url(str(work_dir / "store")),
        scratch_dir=work_dir / "scratch",
        memory_limit=memory_limit,
        threads=THREADS,
    )
    return {"seconds": time.perf_counter() - started, "rows_out": result.row_count, "bytes": result.size_bytes}


def run_raw(rows: int, consumers: int, work_dir: Path, memory_limit: str) -> dict:
    import duckdb

    from datasets.build import DEFAULT_ROW_GROUP_ROWS, ZSTD_LEVEL, connector_for
    from datasets.spec import load_spec

    spec = load_spec(SPEC_PATH, _variables(rows, consumers))
    started = time.perf_counter()
    connector = connector_for(spec)
    con = duckdb.connect(
        config={"threads": THREADS, "memory_limit": memory_limit, "temp_directory": str(work_dir / "tmp")}
    )
    con.register("source", connector.reader())
    target = work_dir / "raw.parquet"
    # The same Parquet settings as the build: the ratio measures the anonymization, not a compression choice.
    options = (
        f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, ROW_GROUP_SIZE {DEFAULT_ROW_GROUP_ROWS}"
    )
    con.execute(f"COPY (SELECT * FROM source) TO '{target}' ({options})")
    con.close()
    return {"seconds": time.perf_counter() - started, "rows_out": rows, "bytes": target.stat().st_size}


def measure(kind: str, rows: int, consumers: int, memory_limit: str) -> dict:
    """Run one side in a child process; its own timing plus its peak RSS from wait4()."""
    with tempfile.TemporaryDirectory(prefix="vitamin-bench-") as work_dir:
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, "--rows", str(rows), "--consumers", str(consumers)]
            + ["--memory-limit", memory_limit, "--work-dir", work_dir],
            stdout=subprocess.PIPE,
            cwd=REPO_DIR,
        )
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{kind} run failed with exit code {child.returncode}")
        result = json.loads(output)
        result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
        return result


GOAL_RATIO = 2.0  # build time and peak memory, each against raw (docs/benchmarks.md)
FLAT_GOAL = 1.2  # peak memory at --growth times the rows from the same buyers, against the first size


def measure_size(rows: int, consumers: int, repeat: int, memory_limit: str) -> dict[str, dict[str, float]]:
    """Medians of seconds and peak RSS per side at one size, printed as they come."""
    runs: dict[str, list[dict]] = {"raw": [], "build": []}
    for _ in range(repeat):
        for kind in ("raw", "build"):
            runs[kind].append(measure(kind, rows, consumers, memory_limit))
    medians = {
        kind: {key: statistics.median(run[key] for run in runs[kind]) for key in ("seconds", "peak_rss_mb")}
        for kind in runs
    }
    print(
        f"card_transactions build from {rows:,} synthetic rows, {consumers:,} buyers"
        f" (median of {repeat}; {THREADS} threads, memory limit {memory_limit})"
    )
    for kind, label in (("raw", "raw DuckDB -> Parquet"), ("build", "vitamin build")):
        seconds, peak = medians[kind]["seconds"], medians[kind]["peak_rss_mb"]
        print(f"  {label:22s}: {seconds:8.2f} s  {rows / seconds:12,.0f} rows/s  peak RSS {peak:7.0f} MB")
    print(f"  rows published        : {runs['build'][-1]['rows_out']:,} ({runs['build'][-1]['bytes'] / 1e6:.1f} MB)")
    for key, label in (("seconds", "time"), ("peak_rss_mb", "peak memory")):
        ratio = medians["build"][key] / medians["raw"][key]
        print(f"  {label + ' build/raw':22s}: {ratio:8.2f}  (goal <= {GOAL_RATIO})")
    return medians


def record_size(rows: int, consumers: int, medians: dict[str, dict[str, float]]) -> None:
    build, raw = medians["build"], medians["raw"]
    size = f"{rows:,} source rows, {consumers:,} buyers"
    goal, met = figures.ratio_goal(build["seconds"] / raw["seconds"], GOAL_RATIO)
    figures.record(f"card_transactions build, {size}", build["seconds"], raw["seconds"], "s", goal=goal, met=met)
    goal, met = figures.ratio_goal(build["peak_rss_mb"] / raw["peak_rss_mb"], GOAL_RATIO)
    figures.record(
        f"peak resident memory of the build, {size}",
        build["peak_rss_mb"],
        raw["peak_rss_mb"],
        "MB",
        goal=goal,
        met=met,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="source transaction rows (default 10M)")
    parser.add_argument("--consumers", type=int, help="distinct buyers the source draws from (default: rows / 20)")
    parser.add_argument(
        "--growth",
        type=int,
        default=4,
        help="also measure at this many times --rows, and this many times the buyers (default 4; 1: only --rows)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per side and size; medians are reported")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory limit of both sides (default 2GB)")
    parser.add_argument("--child", choices=("build", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    consumers = args.consumers or default_consumers(args.rows)

    if args.child:
        sys.path.insert(0, str(REPO_DIR))
        run = run_build if args.child == "build" else run_raw
        print(json.dumps(run(args.rows, consumers, Path(args.work_dir), args.memory_limit)))
        return

    sizes = [(args.rows, consumers)]
    if args.growth > 1:
        sizes += [(args.rows * args.growth, consumers), (args.rows, consumers * args.growth)]
    peaks = {}
    for rows, buyers in sizes:
        medians = measure_size(rows, buyers, args.repeat, args.memory_limit)
        record_size(rows, buyers, medians)
        peaks[rows, buyers] = medians["build"]["peak_rss_mb"]
    if len(sizes) == 1:
        return
    first, more_rows, more_buyers = (peaks[size] for size in sizes)
    print(
        f"build peak memory, {args.growth}x the rows from the same buyers: {more_rows / first:.2f}  (goal <= {FLAT_GOAL})"
    )
    print(f"build peak memory, {args.growth}x the buyers in the same rows: {more_buyers / first:.2f}  (shown)")
    goal, met = figures.ratio_goal(more_rows / first, FLAT_GOAL)
    figures.record(
        f"peak resident memory of the build, {sizes[1][0]:,} rows from the same {consumers:,} buyers"
        f" (raw: the build at {args.rows:,})",
        more_rows,
        first,
        "MB",
        goal=goal,
        met=met,
    )
    figures.record(
        f"peak resident memory of the build, {args.rows:,} rows from {sizes[2][1]:,} buyers (raw: from {consumers:,})",
        more_buyers,
        first,
        "MB",
    )


if __name__ == "__main__":
    main()
