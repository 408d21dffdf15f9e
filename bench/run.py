"""`make bench`: every benchmark in this folder, one after another, each printing ratios to its raw baseline.

    .venv/bin/python bench/run.py                 # full size (as the issues specify); rewrites docs/benchmarks.md
    .venv/bin/python bench/run.py --quick         # small inputs, to check the benchmarks run
    .venv/bin/python bench/run.py synthetic build # only some
    .venv/bin/python bench/run.py --rows 20000 --output /tmp/benchmarks.md   # tiny, to check the writer

The PostgreSQL figures run on a scratch database created on VITAMIN_BENCH_POSTGRES's server
(default postgres://postgres@127.0.0.1:5432/postgres) and dropped after; without a server they
are skipped with a message. The machine is shared and noisy: every figure is a median, and what matters is
the ratio against the baseline measured in the same run.

A full run (every benchmark, full size) rewrites docs/benchmarks.md from the figures it
measured: the date, the machine, and each figure with its raw baseline and ratio
(bench/figures.py); a benchmark that failed is marked so under its figures, and the run
exits non-zero. Other runs write it only where --output says.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import figures

HERE = Path(__file__).resolve().parent
DOCS_FILE = HERE.parent / "docs" / "benchmarks.md"

# The PostgreSQL server the PostgreSQL figures use (a scratch database is made on it and dropped).
POSTGRES_SERVER = os.environ.get("VITAMIN_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")

# name → (script, full-size arguments, quick arguments)
BENCHMARKS = {
    "synthetic": ("bench_synthetic.py", ["--rows", "10000000", "--runs", "3"], ["--rows", "1000000", "--runs", "3"]),
    "build": ("bench_build.py", ["--rows", "10000000"], ["--rows", "500000"]),
    "query-engine": ("bench_query_engine.py", ["--rows", "20000000"], ["--rows", "1000000"]),
    "query-api": ("bench_query_api.py", ["--rows", "20000000"], ["--rows", "1000000"]),
    # The per-request overhead again with PostgreSQL as the database (skipped when no server answers).
    "query-api-postgres": (
        "bench_query_api.py",
        ["--rows", "20000000", "--only-overhead", "--postgres-server", POSTGRES_SERVER],
        ["--rows", "1000000", "--only-overhead", "--postgres-server", POSTGRES_SERVER],
    ),
    "datasette": ("bench_datasette.py", ["--rows", "20000000"], ["--rows", "1000000"]),
    "sharing": ("bench_sharing.py", ["--rows", "10000000"], ["--rows", "1000000"]),
    "lookup": ("bench_lookup.py", ["--rows", "10000000"], ["--rows", "200000", "--repeat", "3"]),
    "fund-index": ("bench_fund_index.py", ["--rows", "1000000"], ["--rows", "200000", "--repeat", "3"]),
    "workbench": ("bench_workbench.py", ["--rows", "1000000"], ["--rows", "200000", "--repeat", "7"]),
    # Cold and warm queries on an S3-compatible store (a SeaweedFS started for the run) against local disk.
    "object-store": ("bench_object_store.py", ["--rows", "20000000"], ["--rows", "1000000", "--repeat", "3"]),
    # Many partners, a mix of requests at 1-16 clients, then memory per process over a 5-minute soak.
    "load": (
        "bench_load.py",
        ["--rows", "2000000", "--partners", "50"],
        ["--rows", "200000", "--partners", "10", "--step-seconds", "5", "--soak-seconds", "30"],
    ),
    # Throughput, p50 and p99 with two query nodes against one, on PostgreSQL (skipped when no server answers).
    "topology": (
        "bench_topology.py",
        ["--rows", "20000000", "--postgres-server", POSTGRES_SERVER],
        ["--rows", "1000000", "--requests", "200", "--rounds", "2", "--postgres-server", POSTGRES_SERVER],
    ),
}


# Above the figures: where a request's time goes, profiled before it was optimized (issue 15).
PREFACE = (
    "Where a small query's time goes through the API: a py-spy flame graph of sequential small queries "
    "(`bench/profile_query_api.py --flamegraph docs/images/query-api-small-profile.svg`; the web process "
    "and its query worker), read in [query-internals.md](query-internals.md#what-a-request-costs).\n\n"
    "![py-spy flame graph of sequential small queries through the API](images/query-api-small-profile.svg)"
)


def with_rows(arguments: list[str], rows: int | None) -> list[str]:
    """The arguments with --rows replaced (every benchmark takes it)."""
    if rows is None:
        return list(arguments)
    out, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument == "--rows":
            skip = True
            continue
        out.append(argument)
    return [*out, "--rows", str(rows)]


def summary(script: Path) -> str:
    """The first line of a benchmark's docstring: what it measures against what."""
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def run_one(name: str, script: Path, arguments: list[str]) -> tuple[int, figures.Section]:
    """Run one benchmark in a child process; its exit code and its figures."""
    with tempfile.TemporaryDirectory(prefix="vitamin-bench-figures-") as folder:
        path = Path(folder) / "figures.jsonl"
        env = {**os.environ, figures.FIGURES_ENV: str(path)}
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *arguments], env=env)
        seconds = time.monotonic() - started
        measured = figures.read(path)
    command = " ".join(["bench/" + script.name, *arguments])
    return code, figures.Section(name, command, summary(script), measured, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small inputs")
    parser.add_argument("--rows", type=int, help="run every benchmark on this many rows (to check that they run)")
    parser.add_argument(
        "--output",
        type=Path,
        help="write the figures as Markdown here (default: docs/benchmarks.md after a full run of every benchmark)",
    )
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    full = not args.quick and args.rows is None and not args.names
    output = args.output or (DOCS_FILE if full else None)

    started_at = dt.datetime.now(dt.UTC)
    machine = figures.machine()  # before the run: the load average says how busy the machine was
    failed, sections = [], []
    for name in args.names or list(BENCHMARKS):
        script, full_arguments, quick_arguments = BENCHMARKS[name]
        if not (HERE / script).exists():
            continue
        arguments = with_rows(quick_arguments if args.quick else full_arguments, args.rows)
        print(f"\n=== {name} ({script})", flush=True)
        code, section = run_one(name, HERE / script, arguments)
        print(f"=== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {section.seconds:.0f}s", flush=True)
        if code:
            failed.append(name)
            section.notes.append(
                f"**This benchmark failed** (exit code {code}): the figures above, if any, are those it "
                "recorded before it stopped; see its output in the run's log."
            )
        sections.append(section)

    if output is None:
        print(f"\n(not a full run: {DOCS_FILE.relative_to(HERE.parent)} left as it is; --output PATH writes one)")
    else:
        size = "quick inputs" if args.quick else ("full size" if args.rows is None else f"{args.rows:,} rows")
        generated = (
            f"Generated by `make bench` (`bench/run.py`) on {started_at:%Y-%m-%d %H:%M} UTC from the figures "
            f"measured in that run ({size}). Do not edit by hand: run `make bench` again."
        )
        if failed:  # written all the same: one benchmark failing must not hide what the others measured
            generated += f" In that run {', '.join(failed)} failed: see the note under each."
        output.write_text(
            figures.render(sections, generated=generated, machine=machine, preface=PREFACE), encoding="utf-8"
        )
        print(f"\nwrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
