"""How fast the synthetic connector makes transactions, against numpy drawing the same number of raw values.

    .venv/bin/python bench/bench_synthetic.py [--rows N] [--runs 3]

Prints the median rows/second of the transactions table (15 columns, strings
included), the median rows/second of the raw baseline (numpy PCG64 drawing one
int64 and one float64 per row, in the same block size), and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import figures
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import get_connector  # noqa: E402 - after the path is set
from connectors.synthetic.table import BLOCK_ROWS  # noqa: E402


def generate_transactions(rows: int) -> int:
    connector = get_connector("synthetic", {"table": "transactions", "rows": rows, "seed": 42}, batch_rows=BLOCK_ROWS)
    return sum(batch.num_rows for batch in connector.batches())


def generate_raw_values(rows: int) -> int:
    rng = np.random.Generator(np.random.PCG64(42))
    made = 0
    for start in range(0, rows, BLOCK_ROWS):
        count = min(BLOCK_ROWS, rows - start)
        rng.integers(0, 2**62, count, dtype=np.int64)
        rng.random(count)
        made += count
    return made


def median_rate(make, rows: int, runs: int) -> float:
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        made = make(rows)
        rates.append(made / (time.perf_counter() - started))
        assert made == rows, f"made {made} rows, expected {rows}"
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    generate_transactions(BLOCK_ROWS)  # warm up: lookup tables are built once per process
    synthetic = median_rate(generate_transactions, args.rows, args.runs)
    baseline = median_rate(generate_raw_values, args.rows, args.runs)
    print(
        f"synthetic transactions: {synthetic:,.0f} rows/s (median of {args.runs} runs of {args.rows:,} rows, 15 columns)"
    )
    print(f"raw numpy baseline:     {baseline:,.0f} rows/s (one int64 + one float64 per row, PCG64)")
    print(f"ratio:                  {synthetic / baseline:.3f} of the raw baseline")
    print(f"target >= 1,000,000 rows/s: {'met' if synthetic >= 1_000_000 else 'NOT met'}")
    figures.record(
        f"synthetic transactions, {args.rows:,} rows (raw: numpy, one int64 + one float64 per row)",
        synthetic,
        baseline,
        "rows/s",
        goal="≥ 1,000,000 rows/s",
        met=synthetic >= 1_000_000,
        higher_is_better=True,
    )


if __name__ == "__main__":
    main()
