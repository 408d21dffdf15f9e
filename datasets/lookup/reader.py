"""Point reads of a lookup dataset's version: the rows whose key is one of a few pseudonyms.

The build writes a lookup dataset sorted by its primary key in small row groups
(`LOOKUP_ROW_GROUP_ROWS`), each with the key's min and max in its statistics, and for
every secondary key a file of (key, primary key) sorted by that key
(`datasets.build._write_lookup_indexes`). Reading a customer is then: find the one row
group whose [min, max] holds the pseudonym (a binary search over statistics kept in
memory), decode that row group's requested columns, keep the matching rows. A batch
touching more than `SCAN_SHARE` of the row groups is answered instead by one DuckDB scan of
the files joined with the keys (local stores; elsewhere the row groups are read in parallel),
which is what reading most row groups one by one would cost anyway.

Versions are immutable, so what is learnt from a file's footer is cached by the
caller's `cache_key` (paths and checksums) for the life of the process.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from datasets.sql import quote_identifier

# Beyond this share of the row groups to decode, one DuckDB scan of the files joined with the keys is cheaper
# than reading them one by one (a 10,000-customer batch over 10M customers touches ~90% of them).
SCAN_SHARE = 0.25
SCAN_THREADS = 2
_CACHED_FILE_SETS = 32


@dataclass(frozen=True)
class _RowGroup:
    path: str
    index: int
    low: str | None  # the key's min and max in this row group; None when the file has no statistics
    high: str | None


class _SortedFiles:
    """Parquet files and, for one key column, each row group's key range (sorted by its low end)."""

    def __init__(self, fs: pafs.FileSystem, paths: Sequence[str], key: str):
        self.fs = fs
        self.paths = tuple(paths)
        self.key = key
        self.metadata: dict[str, pq.FileMetaData] = {}
        groups: list[_RowGroup] = []
        for path in self.paths:
            with fs.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
            self.metadata[path] = metadata
            column = metadata.schema.to_arrow_schema().get_field_index(key)
            if column < 0:
                raise ValueError(f"{path} has no column {key!r}")
            for index in range(metadata.num_row_groups):
                stats = metadata.row_group(index).column(column).statistics
                known = stats is not None and stats.has_min_max
                groups.append(_RowGroup(path, index, stats.min if known else None, stats.max if known else None))
        self.unbounded = [group for group in groups if group.low is None]
        bounded = sorted((group for group in groups if group.low is not None), key=lambda group: group.low)
        # Ranges that do not overlap (files sorted by the key) allow a binary search; others are checked one by one.
        self.disjoint = all(a.high < b.low for a, b in zip(bounded, bounded[1:], strict=False))
        self.bounded = bounded
        self.lows = [group.low for group in bounded]
        self.row_groups = len(groups)

    def groups_for(self, value: str) -> list[_RowGroup]:
        if self.disjoint:
            position = bisect.bisect_right(self.lows, value) - 1
            found = [self.bounded[position]] if position >= 0 and value <= self.bounded[position].high else []
        else:
            found = [group for group in self.bounded if group.low <= value <= group.high]
        return found + self.unbounded

    def read(self, values: Collection[str], columns: Sequence[str]) -> pa.Table:
        """The rows of these files whose key is in `values`, with `columns` (which include the key)."""
        wanted: dict[str, set[int]] = {}
        touched = 0
        for value in values:
            for group in self.groups_for(value):
                indexes = wanted.setdefault(group.path, set())
                touched += group.index not in indexes
                indexes.add(group.index)
        value_set = pa.array(sorted(set(values)), pa.string())
        if touched > SCAN_SHARE * self.row_groups and isinstance(self.fs, pafs.LocalFileSystem):
            return self._scan(value_set, columns)
        parts = []
        for path, indexes in wanted.items():
            with self.fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle, metadata=self.metadata[path]).read_row_groups(
                    sorted(indexes), columns=list(columns), use_threads=len(indexes) > 1
                )
            parts.append(table.filter(pc.is_in(table[self.key], value_set=value_set)))
        if not parts:
            return self._empty(columns)
        return pa.concat_tables(parts)

    def _scan(self, value_set: pa.Array, columns: Sequence[str]) -> pa.Table:
        """One pass over the files joined with the keys in DuckDB: what reading most row groups costs anyway."""
        selected = ", ".join(f"d.{quote_identifier(name)}" for name in columns)
        key = quote_identifier(self.key)
        with duckdb.connect(":memory:", config={"threads": SCAN_THREADS}) as con:
            con.register("vitamin_wanted", pa.table({"k": value_set}))
            sql = f"SELECT {selected} FROM read_parquet($paths) AS d SEMI JOIN vitamin_wanted AS w ON d.{key} = w.k"
            return con.sql(sql, params={"paths": list(self.paths)}).to_arrow_table()

    def _empty(self, columns: Sequence[str]) -> pa.Table:
        schema = self.metadata[self.paths[0]].schema.to_arrow_schema()
        return pa.schema([schema.field(name) for name in columns]).empty_table()


_cache: OrderedDict[tuple, _SortedFiles] = OrderedDict()
_cache_lock = threading.Lock()


def _sorted_files(fs: pafs.FileSystem, paths: Sequence[str], key: str, cache_key: Iterable) -> _SortedFiles:
    entry = (tuple(cache_key), key)
    with _cache_lock:
        found = _cache.get(entry)
        if found is not None:
            _cache.move_to_end(entry)
            return found
    found = _SortedFiles(fs, paths, key)  # outside the lock: reading footers may take a while
    with _cache_lock:
        _cache[entry] = found
        while len(_cache) > _CACHED_FILE_SETS:
            _cache.popitem(last=False)
    return found


@dataclass(frozen=True)
class LookupTable:
    """One version of a lookup dataset: its data files (sorted by `primary_key`) and its key index files.

    `cache_key` identifies the version's files for good (e.g. each file's path and SHA-256).
    """

    fs: pafs.FileSystem
    data_paths: tuple[str, ...]
    primary_key: str
    index_paths: Mapping[str, str]
    cache_key: tuple

    def find(self, key: str, pseudonyms: Collection[str], columns: Sequence[str]) -> pa.Table:
        """The rows of the customers whose `key` column is one of `pseudonyms`: a table of `key`, the primary
        key (once, when they are the same) and `columns`, one row per customer found, in no particular order."""
        if not pseudonyms:
            wanted = list(dict.fromkeys([key, self.primary_key, *columns]))
            return self._data()._empty(wanted)
        if key == self.primary_key:
            wanted = [key, *(c for c in columns if c != key)]
            return self._data().read(pseudonyms, wanted)
        if key not in self.index_paths:
            raise ValueError(f"{key!r} is not a lookup key of this version")
        index = _sorted_files(self.fs, (self.index_paths[key],), key, (*self.cache_key, "index", key))
        pairs = index.read(pseudonyms, [key, self.primary_key])
        wanted = [self.primary_key, *(c for c in columns if c != self.primary_key)]
        rows = self._data().read(pairs[self.primary_key].to_pylist(), wanted)
        return pairs.join(rows, self.primary_key, join_type="inner")

    def _data(self) -> _SortedFiles:
        return _sorted_files(self.fs, self.data_paths, self.primary_key, self.cache_key)
