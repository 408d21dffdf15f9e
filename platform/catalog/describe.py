"""What the catalog says about a dataset beyond its stored fields, derived from its spec and a version:
the data dictionary, freshness, temporal and spatial coverage, and the aggregate-preview settings.

A version is described by the spec it was built from (`DatasetVersion.dataset_spec`); a dataset
with no version yet by its current spec file (`Dataset.current_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from catalog import schedule
from catalog.models import Dataset, DatasetVersion
from datasets.generalize import Region
from datasets.spec import ColumnSpec, DatasetSpec

TEMPORAL_TYPES = ("date", "timestamp")
DEFAULT_PREVIEW_K = 10  # when a spec names no k, suppress like the strictest demo dataset
# Column roles whose values never appear in catalog samples: pseudonyms reach a partner only re-keyed for them.
HIDDEN_ROLES = frozenset({"identifier", "entity"})
# Column roles whose min and max the catalog never shows (the build withholds them too; this holds even if it did not).
NO_EXTREMES_ROLES = HIDDEN_ROLES | {"sensitive"}
# How many days the data's last date may lie before its publication, by update frequency, before the catalog says
# the data is behind (a monthly dataset's month column names the month's first day; published in the next month).
BEHIND_AFTER_DAYS = {"daily": 7, "weekly": 21, "monthly": 62, "quarterly": 123, "yearly": 400}
BEHIND_AFTER_DAYS_DEFAULT = 62


@dataclass(frozen=True)
class ColumnEntry:
    name: str
    type: str
    role: str
    description: str
    null_count: int | None = None
    distinct_count: int | None = None
    distinct_approximate: bool = False  # the build's HyperLogLog estimate (approx_count_distinct), not an exact count
    min: Any = None
    max: Any = None
    non_null_share: float | None = None  # 0..1 of the version's rows
    distinct_share: float | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "role": self.role,
            "description": self.description,
            "stats": None
            if self.null_count is None
            else {
                "null_count": self.null_count,
                "distinct_count": self.distinct_count,
                "distinct_count_approximate": self.distinct_approximate,
                "min": self.min,
                "max": self.max,
            },
        }


@dataclass(frozen=True)
class Coverage:
    temporal_column: str | None
    temporal_from: Any
    temporal_to: Any
    spatial: str | None

    def to_dict(self) -> dict:
        temporal = None
        if self.temporal_column:
            temporal = {"column": self.temporal_column, "from": self.temporal_from, "to": self.temporal_to}
        return {"temporal": temporal, "spatial": self.spatial}


def spec_for(dataset: Dataset, version: DatasetVersion | None) -> DatasetSpec:
    """The spec that governs `version`, or the current one when there is no version."""
    return version.dataset_spec if version is not None else dataset.current_spec


def spec_columns(spec: DatasetSpec) -> dict[str, ColumnSpec]:
    """The spec's columns by name, in spec order."""
    return {column.name: column for column in spec.columns}


def data_dictionary(dataset: Dataset, version: DatasetVersion | None) -> list[ColumnEntry]:
    """The published columns with type, role and description, and the version's statistics when there is one."""
    described = spec_columns(spec_for(dataset, version))
    if version is not None and version.schema:
        schema = [(column["name"], column.get("type", ""), column.get("role", "")) for column in version.schema]
    else:  # nothing built yet: what the spec will publish
        schema = [(name, column.type, "") for name, column in described.items() if column.published]
    rows = version.row_count if version is not None else 0
    entries = []
    for name, column_type, role in schema:
        column = described.get(name)
        stats = (version.column_stats or {}).get(name) if version is not None else None
        entry = ColumnEntry(
            name=name,
            type=column_type,
            role=role or (column.role if column else ""),
            description=column.description if column else "",
        )
        if stats:
            nulls = stats.get("null_count") or 0
            approximate = "distinct_approx" in stats  # what datasets.profile writes; an exact count is distinct_count
            distinct = stats["distinct_approx"] if approximate else stats.get("distinct_count")
            entry = replace(
                entry,
                null_count=nulls,
                distinct_count=distinct,
                distinct_approximate=approximate and distinct is not None,
                min=None if entry.role in NO_EXTREMES_ROLES else stats.get("min"),
                max=None if entry.role in NO_EXTREMES_ROLES else stats.get("max"),
                non_null_share=(rows - nulls) / rows if rows else None,
                distinct_share=min(1.0, distinct / rows) if rows and distinct is not None else None,
            )
        entries.append(entry)
    return entries


def next_refresh_at(dataset: Dataset, now: datetime | None = None) -> datetime | None:
    """When the next scheduled refresh is queued, by the rule beat's dispatcher applies (`catalog.schedule`)."""
    return schedule.next_scheduled_at(dataset, now or timezone.now())


def time_range(spec: DatasetSpec, column_stats: dict | None) -> dict | None:
    """The period the data itself covers, {column, from, to}, from the spec's `time_column` and a version's
    statistics: shown beside the publication time, so that old data published today does not look fresh."""
    stats = (column_stats or {}).get(spec.time_column) if spec.time_column else None
    if not stats or stats.get("min") is None:
        return None
    return {"column": spec.time_column, "from": stats["min"], "to": stats["max"]}


@dataclass(frozen=True)
class Freshness:
    """When a version was published and what period its data covers: the catalog page and API show both, so that
    old data published today does not look fresh."""

    published_at: datetime
    time_range: dict | None  # {column, from, to}, see time_range
    days_behind: int | None  # days from the data's last date to the publication day
    behind: bool  # more days behind than the update frequency allows (BEHIND_AFTER_DAYS)


def freshness(dataset: Dataset, version: DatasetVersion | None) -> Freshness | None:
    """The publication time of `version` beside its data's own period; None before the first version."""
    if version is None:
        return None
    period = time_range(version.dataset_spec, version.column_stats)
    last = _as_date(period["to"]) if period else None
    published = timezone.localtime(version.created_at).date()
    days_behind = (published - last).days if last else None
    allowed = BEHIND_AFTER_DAYS.get(dataset.update_frequency, BEHIND_AFTER_DAYS_DEFAULT)
    return Freshness(
        published_at=version.created_at,
        time_range=period,
        days_behind=days_behind,
        behind=days_behind is not None and days_behind > allowed,
    )


def _as_date(value: Any) -> date | None:
    """A statistic's date or timestamp (ISO text in the stats) as a date; None for anything else."""
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def coverage(dataset: Dataset, version: DatasetVersion | None, dictionary: list[ColumnEntry]) -> Coverage:
    """Temporal coverage from the spec's time column (else the first date or time column) min and max; spatial
    from a region-generalized column."""
    spec = spec_for(dataset, version)
    temporal = next(
        (
            entry
            for entry in dictionary
            if entry.min is not None
            and (entry.name == spec.time_column if spec.time_column else entry.type.lower().startswith(TEMPORAL_TYPES))
        ),
        None,
    )
    spatial = None
    for name, column in spec_columns(spec).items():
        if isinstance(column.generalize, Region):
            count = next((entry.distinct_count for entry in dictionary if entry.name == name), None)
            level = column.generalize.level
            spatial = (
                _("Mainland China, by %(level)s (%(count)s values)") % {"level": level, "count": count}
                if count
                else _("Mainland China, by %(level)s") % {"level": level}
            )
            break
    return Coverage(
        temporal_column=temporal.name if temporal else None,
        temporal_from=temporal.min if temporal else None,
        temporal_to=temporal.max if temporal else None,
        spatial=spatial,
    )


def lookup_terms(spec: DatasetSpec) -> dict | None:
    """What lookups of this dataset take and give (the catalog API and page show it); None for other tiers."""
    rules = spec.lookup
    if rules is None:
        return None
    by_name = {column.name: column for column in spec.columns}
    return {
        "id_types": [by_name[name].identifier for name in rules.keys if name in by_name],
        "fields": list(rules.fields),
        "thresholds": list(rules.thresholds),
        "consent_scope": rules.consent_scope,
        "cohort": (
            {"dimensions": list(rules.cohort.dimensions), "measures": list(rules.cohort.measures)}
            if rules.cohort
            else None
        ),
        "k": spec.privacy.k if spec.privacy else None,
    }


def preview_dimensions(spec: DatasetSpec) -> list[str]:
    """Columns an aggregate preview may count by: the analysis dimensions, plain dimensions first."""
    columns = spec_columns(spec)
    names = list(spec.analysis.dimensions) if spec.analysis else []
    names = names or [name for name, column in columns.items() if column.role == "dimension"]
    return sorted(names, key=lambda name: name not in columns or columns[name].role != "dimension")


def preview_entity(spec: DatasetSpec) -> str | None:
    """The column whose distinct values are counted against k (the people behind the rows), if any."""
    return spec.privacy.entity if spec.privacy else None


def preview_k(spec: DatasetSpec) -> int:
    """Groups with fewer distinct entities than this are suppressed: the analysis rules' minimum, else the spec's k."""
    if spec.analysis and spec.analysis.min_entities:
        return spec.analysis.min_entities
    return spec.privacy.k if spec.privacy and spec.privacy.k else DEFAULT_PREVIEW_K
