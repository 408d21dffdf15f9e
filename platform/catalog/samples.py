"""Sample data for the catalog, by tier: real rows of an open dataset, k-suppressed counts by one dimension
of an aggregate dataset, and nothing but the column names of a lookup dataset.

Rows are read from the version's Parquet files in the store. Identifier and
entity columns are never shown: pseudonyms reach a partner only re-keyed for
that partner, which a catalog page is not. Who may see which sample is decided
by the callers (the API view and the portal page), through the grant service.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow.dataset as pads
import pyarrow.parquet as pq
from django.conf import settings

from catalog import describe
from catalog.models import Dataset, DatasetVersion
from datasets.spec import Tier
from datasets.storage import Store

SAMPLE_ROWS = 20
MAX_SAMPLE_ROWS = 100
MAX_PREVIEW_GROUPS = 100


class SampleError(ValueError):
    """The sample asked for cannot be made (e.g. a dimension the preview does not allow)."""


@dataclass(frozen=True)
class Sample:
    kind: str  # "rows", "aggregate", "schema_only", or "none" before the first version
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    version: int | None = None
    dimension: str | None = None  # aggregate: the column counted by
    k: int | None = None  # aggregate: groups with fewer distinct entities (or rows) are suppressed
    suppressed_groups: int = 0
    dimensions: list[str] = field(default_factory=list)  # aggregate: the columns one may count by

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "version": self.version, "columns": self.columns, "rows": self.rows}
        if self.kind == "aggregate":
            data.update(
                dimension=self.dimension,
                dimensions=self.dimensions,
                k=self.k,
                suppressed_groups=self.suppressed_groups,
            )
        return data


def for_subscribers_only(dataset: Dataset, version: DatasetVersion | None) -> bool:
    """Figures computed from non-open data are for subscribers only: when the version's own tier, or the
    dataset's current one, is aggregate."""
    return Tier.AGGREGATE in {dataset.tier, version.dataset_spec.tier if version is not None else dataset.tier}


def sample_for(
    dataset: Dataset, version: DatasetVersion | None, *, limit: int = SAMPLE_ROWS, dimension: str | None = None
) -> Sample:
    """The sample the dataset's tier allows, from `version` (normally the latest published one)."""
    visible = [
        entry.name for entry in describe.data_dictionary(dataset, version) if entry.role not in describe.HIDDEN_ROLES
    ]
    if version is None:
        return Sample(kind="none", columns=visible)
    tier = version.dataset_spec.tier  # the version's own rules, whatever the spec file says today
    if tier is Tier.OPEN:
        rows = _first_rows(_data_paths(version), visible, max(1, min(limit, MAX_SAMPLE_ROWS)))
        return Sample(kind="rows", columns=visible, rows=rows, version=version.number)
    if tier is Tier.AGGREGATE:
        return _aggregate_preview(dataset, version, dimension)
    return Sample(kind="schema_only", columns=visible, version=version.number)


def _aggregate_preview(dataset: Dataset, version: DatasetVersion, dimension: str | None) -> Sample:
    spec = version.dataset_spec
    allowed = [name for name in describe.preview_dimensions(spec) if name in {c["name"] for c in version.schema}]
    if not allowed:
        raise SampleError(f"{dataset.slug} has no dimension to preview by.")
    dimension = dimension or allowed[0]
    if dimension not in allowed:
        raise SampleError(f"Preview {dataset.slug} by one of {', '.join(allowed)}, not {dimension!r}.")
    entity = describe.preview_entity(spec)
    k = describe.preview_k(spec)
    checksums = tuple(entry.get("sha256", "") for entry in version.files)
    groups = _group_counts(settings.STORE_URL, tuple(_data_paths(version)), checksums, dimension, entity)
    kept = [group for group in groups if (group[2] if entity else group[1]) >= k]
    columns = [dimension, "rows"] + ([f"distinct {entity}"] if entity else [])
    rows = [[value, count, entities] if entity else [value, count] for value, count, entities in kept]
    return Sample(
        kind="aggregate",
        columns=columns,
        rows=rows[:MAX_PREVIEW_GROUPS],
        version=version.number,
        dimension=dimension,
        dimensions=allowed,
        k=k,
        suppressed_groups=len(groups) - len(kept),
    )


@functools.lru_cache(maxsize=64)
def _group_counts(
    store_url: str, paths: tuple[str, ...], checksums: tuple[str, ...], dimension: str, entity: str | None
) -> tuple[tuple[Any, int, int], ...]:
    """(value, rows, distinct entities) per value of `dimension`. Cached: a version's files never change,
    and the checksums in the key tell apart two stores that reused a path."""
    store = Store.from_url(store_url)
    columns = [dimension] + ([entity] if entity else [])
    table = pads.dataset(list(paths), filesystem=store.fs, format="parquet").to_table(columns=columns)
    aggregations = [([], "count_all")] + ([(entity, "count_distinct")] if entity else [])
    grouped = table.group_by(dimension).aggregate(aggregations).to_pylist()
    counts = [
        (_json_safe(row[dimension]), row["count_all"], row.get(f"{entity}_count_distinct", 0) if entity else 0)
        for row in grouped
    ]
    return tuple(sorted(counts, key=lambda group: (group[0] is None, str(group[0]))))


def _first_rows(paths: list[str], columns: list[str], limit: int) -> list[list[Any]]:
    store = _store()
    rows: list[list[Any]] = []
    for path in paths:
        with store.fs.open_input_file(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=limit, columns=columns):
                for record in batch.to_pylist():
                    rows.append([_json_safe(record[name]) for name in columns])
                    if len(rows) == limit:
                        return rows
    return rows


def _data_paths(version: DatasetVersion) -> list[str]:
    store = _store()
    return [
        store.path(version.location, entry["path"])
        for entry in version.data_files
        if entry["path"].endswith(".parquet")
    ]


def _store() -> Store:
    return Store.from_url(settings.STORE_URL)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    return value
