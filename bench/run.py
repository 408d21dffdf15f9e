"""`make bench`: every benchmark in this folder, one after another, each printing ratios to its raw baseline.

    .venv/bin/python bench/run.py                 # full size (as the issues specify)
    .venv/bin/python bench/run.py --quick         # small inputs, to check the benchmarks run
    .venv/bin/python bench/run.py synthetic build # only some

The machine is shared and noisy: every figure is a median, and what matters is
the ratio against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name → (script, full-size arguments, quick arguments)
BENCHMARKS = {
    "synthetic": ("bench_synthetic.py", ["--rows", "10000000", "--runs", "3"], ["--rows", "1000000", "--runs", "3"]),
    "build": ("bench_build.py", ["--rows", "10000000"], ["--rows", "500000"]),
    "query-engine": ("bench_query_engine.py", ["--rows", "20000000"], ["--rows", "1000000"]),
    "query-api": ("bench_query_api.py", ["--rows", "20000000"], ["--rows", "1000000"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small inputs")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    for name in args.names or list(BENCHMARKS):
        script, full, quick = BENCHMARKS[name]
        if not (HERE / script).exists():
            continue
        print(f"\n=== {name} ({script})", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / script), *(quick if args.quick else full)])  # noqa: S603
        print(
            f"=== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {time.monotonic() - started:.0f}s", flush=True
        )
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
