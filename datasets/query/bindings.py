"""What one query may read and under which limits: the gateway's inputs, built by its callers from the catalog.

A `DatasetBinding` is one granted dataset version as the gateway sees it: its
slug (the name partner SQL uses), the version's Parquet files, each column's
role from the spec, and for aggregate datasets the entity column and analysis
rules (`datasets.spec.AnalysisSpec`, the same object the spec loader builds).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from datasets.spec import AnalysisSpec, Tier

_SLUG = re.compile(r"[a-z][a-z0-9_]{1,62}")
# Columns the gateway adds to its views; a dataset column may not look like one.
RESERVED_COLUMN_PREFIX = "__vitamin"
# Roles whose values identify a person: re-keyed per partner in open datasets, never shown from aggregate ones.
IDENTIFYING_ROLES = frozenset({"identifier", "entity"})


@dataclass(frozen=True)
class DatasetBinding:
    """One granted dataset version. `columns` maps each published column to its role, in file order."""

    slug: str
    version: int
    tier: Tier
    files: tuple[str, ...]
    columns: Mapping[str, str]
    entity: str | None = None
    analysis: AnalysisSpec | None = None
    size_bytes: int = 0  # total size of `files`: what a query that does not finish is charged as scanned
    fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tier", Tier(self.tier))
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "columns", dict(self.columns))
        if not _SLUG.fullmatch(self.slug):
            raise ValueError(f"invalid dataset slug {self.slug!r}")
        if not self.files:
            raise ValueError(f"{self.slug} v{self.version}: a version needs at least one file")
        for name in self.columns:
            if name.lower().startswith(RESERVED_COLUMN_PREFIX):
                raise ValueError(f"{self.slug}: column name {name!r} is reserved")
        if self.tier is Tier.AGGREGATE:
            if self.analysis is None or not self.entity:
                raise ValueError(f"{self.slug}: an aggregate dataset needs an entity column and analysis rules")
            if self.entity not in self.columns:
                raise ValueError(f"{self.slug}: entity column {self.entity!r} is not a column")
        parts = [self.slug, str(self.version), self.tier.value, *self.files, repr(sorted(self.columns.items()))]
        parts += [str(self.entity), repr(self.analysis)]
        object.__setattr__(self, "fingerprint", hashlib.sha256("\n".join(parts).encode()).hexdigest())

    def role(self, column: str) -> str | None:
        """The role of a column, by DuckDB's case-insensitive name matching; None when there is no such column."""
        lowered = column.lower()
        return next((role for name, role in self.columns.items() if name.lower() == lowered), None)

    def has_column(self, column: str) -> bool:
        return self.role(column) is not None

    @property
    def identifying_columns(self) -> tuple[str, ...]:
        return tuple(name for name, role in self.columns.items() if role in IDENTIFYING_ROLES)
