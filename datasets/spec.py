"""Dataset specs: one YAML file per dataset, loaded into a validated, immutable `DatasetSpec`.

Loading checks everything and reports every problem at once (`SpecError.problems`,
a list of (file, field, reason)), so an author fixes a spec in one pass. The
checks that matter most keep raw identifiers out of the output:

- Only declared columns are published (an allow-list): a source column the spec
  does not name never reaches a partner.
- A column whose name or source column is a known direct identifier (id_number,
  phone, name, ...) must have role `identifier` (action drop or pseudonymize) or
  role `entity` (pseudonymized).
- Quasi-identifiers need a generalization rule; entities must be pseudonymized.

See docs/datasets.md for the format.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import hashlib
import json
import re
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import yaml
from croniter import croniter

from datasets.generalize import NUMERIC, Rule, RuleError, parse_rule
from datasets.identifiers import IDENTIFIER_KINDS


class Tier(StrEnum):
    """How partners may use a dataset: row-level SQL, aggregates over groups of at least k, or consented lookups."""

    OPEN = "open"
    AGGREGATE = "aggregate"
    LOOKUP = "lookup"

    @property
    def label(self) -> str:
        return self.value.capitalize()


TIERS = tuple(tier.value for tier in Tier)


class Mode(StrEnum):
    """A way of using a dataset, granted per subscription."""

    QUERY = "query"
    DOWNLOAD = "download"
    LOOKUP = "lookup"

    @property
    def label(self) -> str:
        return _MODE_LABELS[self]


_MODE_LABELS = {
    Mode.QUERY: "SQL queries",
    Mode.DOWNLOAD: "Bulk download (Delta Sharing)",
    Mode.LOOKUP: "Consented lookups",
}
MODES = tuple(mode.value for mode in Mode)
# What each tier can be used for.
MODES_BY_TIER: dict[Tier, tuple[Mode, ...]] = {
    Tier.OPEN: (Mode.QUERY, Mode.DOWNLOAD),
    Tier.AGGREGATE: (Mode.QUERY,),
    Tier.LOOKUP: (Mode.LOOKUP,),
}

# Aggregate-tier versions carry one column the spec does not declare and no partner sees: the
# entity's bucket, one of ENTITY_BUCKETS by its hash, written at publish so that the query engine's
# k threshold (datasets/query/aggregate_plan.py) reads one byte per row instead of hashing the
# pseudonym of every row of every query.
ENTITY_BUCKET_COLUMN = "__vitamin_entity_bucket"
ENTITY_BUCKETS = 64


def entity_bucket_sql(column_sql: str) -> str:
    """The bucket (0 .. ENTITY_BUCKETS - 1) of the entity in `column_sql`; NULL for a NULL entity."""
    return f"CAST(CASE WHEN {column_sql} IS NOT NULL THEN hash({column_sql}) % {ENTITY_BUCKETS} END AS UTINYINT)"


ROLES = ("identifier", "quasi", "sensitive", "entity", "dimension", "measure", "public")
ACTIONS = ("drop", "pseudonymize")
UPDATE_FREQUENCIES = ("hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular")
# Spec column type → DuckDB type the build casts to (and the Parquet files carry).
COLUMN_TYPES = {
    "string": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
}
AGGREGATES = ("count", "count_distinct", "sum", "avg", "min", "max")
DEFAULT_AGGREGATES = ("count", "count_distinct", "sum", "avg")
DEFAULT_VERSIONS_KEPT = 3
MIN_ROW_GROUP_ROWS = 2048  # DuckDB writes row groups in multiples of its 2048-row vectors
# Lookup datasets are read a customer at a time: small row groups, so a point read decodes little.
LOOKUP_ROW_GROUP_ROWS = 2048
DEFAULT_TIME_ZONE = "Asia/Shanghai"
# Source columns that are direct identifiers by name: only the identifier and entity roles may read them.
KNOWN_IDENTIFIER_NAMES = frozenset(
    {
        "id_number", "id_card", "id_card_number", "resident_id", "national_id", "passport", "passport_number",
        "phone", "phone_number", "mobile", "mobile_phone", "telephone", "email", "email_address",
        "name", "full_name", "real_name", "customer_name", "address", "home_address",
        "bank_card", "card_number", "account_number",
    }
)  # fmt: skip

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SLUG = re.compile(r"[a-z][a-z0-9_]{1,62}")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PERSON_ROLES = ("identifier", "entity", "quasi", "sensitive")


class Problem(NamedTuple):
    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


class SpecError(ValueError):
    """One or more specs are invalid; `problems` lists every (file, field, reason)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    source: str  # the column of the source relation (after the transform) it is computed from
    role: str
    description: str
    type: str  # a COLUMN_TYPES key; "string" for pseudonymized columns
    action: str | None = None  # identifier / entity: drop or pseudonymize
    generalize: Rule | None = None
    # A pseudonymized column of customer identifiers of this kind (datasets.identifiers): the pseudonym is
    # taken of the SHA-256 of the normalized identifier, so that a lookup can match what a partner sends.
    identifier: str | None = None

    @property
    def published(self) -> bool:
        return self.action != "drop"

    @property
    def pseudonymized(self) -> bool:
        return self.action == "pseudonymize"


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    options: dict[str, Any]


@dataclass(frozen=True)
class HistorySpec:
    """The monthly history a dataset's point-in-time reads start from (`manage.py backfill_dataset`).

    The version holding the data up to the end of month M is published on `publish_day` of month M+1 at
    `publish_time` in the spec's time zone: that is when a partner could first have read it, so an
    `as_of` read before then does not see month M. The build of month M gets the variable
    `VITAMIN_DATA_UNTIL` (the last day of M) for its source to stop there.
    """

    first_month: dt.date  # first day of the first month built
    last_month: dt.date  # first day of the last month built
    publish_day: int  # day of the following month the version appears (1-28)
    publish_time: str  # HH:MM, in the spec's time zone


@dataclass(frozen=True)
class PrivacySpec:
    k: int
    quasi_identifiers: tuple[str, ...] = ()
    entity: str | None = None


@dataclass(frozen=True)
class AnalysisSpec:
    """Aggregate-tier rules the query gateway enforces."""

    aggregates: tuple[str, ...]
    dimensions: tuple[str, ...]  # allowed in GROUP BY and filters
    measures: tuple[str, ...]  # allowed inside SUM/AVG/MIN/MAX
    join_keys: tuple[str, ...]
    min_entities: int  # groups with fewer distinct entities are dropped from results


@dataclass(frozen=True)
class CohortSpec:
    """What a cohort assessment may group by and summarize (docs/lookup.md)."""

    dimensions: tuple[str, ...]  # quasi-identifiers (or public columns) a cohort may be grouped by
    measures: tuple[str, ...]  # numeric columns summarized per group, and banded for grouping


@dataclass(frozen=True)
class LookupSpec:
    """How consented lookups read a lookup dataset (docs/lookup.md)."""

    keys: tuple[str, ...]  # pseudonymized identifier columns; the first is the primary key the files are sorted by
    fields: tuple[str, ...]  # columns a matched lookup may return (a grant may narrow them)
    thresholds: tuple[str, ...]  # numeric columns a threshold-only lookup may compare with a cut-off
    consent_scope: str  # what a customer's consent must cover for a lookup of this dataset
    cohort: CohortSpec | None = None

    @property
    def primary_key(self) -> str:
        return self.keys[0]


@dataclass(frozen=True)
class DatasetSpec:
    slug: str
    title: str
    description: str
    publisher: str
    contact: str
    license: str
    keywords: tuple[str, ...]
    theme: str
    tier: Tier
    update_frequency: str
    schedule: str
    time_zone: str
    source: SourceSpec
    transform: str | None
    columns: tuple[ColumnSpec, ...]
    privacy: PrivacySpec | None
    partitioning: tuple[str, ...]
    sort_by: tuple[str, ...]
    versions_kept: int
    analysis: AnalysisSpec | None
    lookup: LookupSpec | None
    row_group_rows: int | None = None  # rows per Parquet row group; None: the build's default
    # Further sources the transform joins with `source`, by the table name it reads them as (small
    # reference data: a merchant-to-company mapping, a calendar); read whole into the build.
    references: dict[str, SourceSpec] = field(default_factory=dict)
    time_column: str | None = None  # the date or time column that says which period the data covers
    history: HistorySpec | None = None
    file: str = ""
    fingerprint: str = field(default="", compare=False)  # sha256 of the resolved spec: changes when the spec does

    @property
    def published_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(column for column in self.columns if column.published)

    @property
    def bucketed_entity(self) -> str | None:
        """The entity column whose bucket the published files carry (aggregate tier), else None."""
        if self.tier is Tier.AGGREGATE and self.privacy is not None:
            return self.privacy.entity
        return None

    @property
    def pseudonymized_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(column for column in self.columns if column.pseudonymized)

    def column(self, name: str) -> ColumnSpec:
        return next(column for column in self.columns if column.name == name)

    def to_document(self) -> dict[str, Any]:
        """The spec as JSON-safe data, stored with each version it built: `from_document` gives it back, equal."""
        return _encode(self)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DatasetSpec:
        """The spec `to_document` wrote (raises ValueError when the document is not one)."""
        lookup = document.get("lookup") if isinstance(document, Mapping) else None
        if isinstance(lookup, Mapping) and "key" in lookup:
            # Written before lookups were served: its keys are not matchable (no identifier digest), so none.
            document = {**document, "lookup": {"keys": [], "fields": [], "thresholds": [], "consent_scope": ""}}
        try:
            return _decode(cls, document)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a dataset spec document: {exc}") from exc


# --- the spec as a document: typed both ways, by the dataclasses' own annotations ---------------
# Dates in untyped places (a source's options) are tagged, so that they come back as dates.
_DATE_TAG, _DATETIME_TAG = "$date", "$datetime"
_RULE_CLASSES = {rule.kind: rule for rule in typing.get_args(Rule)}


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        document = {item.name: _encode(getattr(value, item.name)) for item in dataclasses.fields(value)}
        if type(value) in _RULE_CLASSES.values():
            document = {"kind": value.kind, **document}
        return document
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, dt.datetime):
        return {_DATETIME_TAG: value.isoformat()}
    if isinstance(value, dt.date):
        return {_DATE_TAG: value.isoformat()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a spec document")


def _untag(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {_DATE_TAG}:
            return dt.date.fromisoformat(value[_DATE_TAG])
        if set(value) == {_DATETIME_TAG}:
            return dt.datetime.fromisoformat(value[_DATETIME_TAG])
        return {key: _untag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    if value is None or hint is Any:
        return _untag(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _decode(options[0], value)
        if all(option in _RULE_CLASSES.values() for option in options):
            return _decode(_RULE_CLASSES[value["kind"]], {k: v for k, v in value.items() if k != "kind"})
        raise TypeError(f"no decoding for {hint}")
    if origin is tuple:
        return tuple(_decode(args[0], item) for item in value)
    if origin in (dict, Mapping, collections.abc.Mapping):
        return {key: _decode(args[1], item) for key, item in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise TypeError(f"{hint.__name__} needs an object, not {type(value).__name__}")
        hints = typing.get_type_hints(hint)
        known = {item.name for item in dataclasses.fields(hint) if item.init}
        unknown = set(value) - known - ({"kind"} if hint in _RULE_CLASSES.values() else set())
        if unknown:
            raise ValueError(f"{hint.__name__} has no field {sorted(unknown)[0]!r}")
        return hint(**{name: _decode(hints[name], item) for name, item in value.items() if name in known})
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is dt.date:
        return dt.date.fromisoformat(value[_DATE_TAG] if isinstance(value, Mapping) else value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if isinstance(value, float) else value
    if hint in (str, int, bool) and isinstance(value, hint):
        return value
    raise TypeError(f"expected {getattr(hint, '__name__', hint)}, not {value!r}")


def load_spec(path: str | Path, variables: Mapping[str, Any] | None = None) -> DatasetSpec:
    """Load and validate one spec file; `${NAME}` / `${NAME:-default}` in source options come from `variables`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(str(path), "", f"cannot read: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(str(path), "", f"not valid YAML: {exc}")]) from None
    return parse_spec(data, file=str(path), variables=variables)


def load_specs(folder: str | Path, variables: Mapping[str, Any] | None = None) -> list[DatasetSpec]:
    """Every `*.yaml`/`*.yml` spec in `folder`, sorted by slug; problems of all files are reported together."""
    specs: list[DatasetSpec] = []
    problems: list[Problem] = []
    paths = sorted(path for pattern in ("*.yaml", "*.yml") for path in Path(folder).glob(pattern))
    for path in paths:
        try:
            specs.append(load_spec(path, variables))
        except SpecError as exc:
            problems.extend(exc.problems)
    first_file: dict[str, str] = {}
    for spec in specs:
        if spec.slug in first_file:
            problems.append(
                Problem(spec.file, "slug", f"duplicate slug {spec.slug!r} (also in {first_file[spec.slug]})")
            )
        first_file.setdefault(spec.slug, spec.file)
    if problems:
        raise SpecError(problems)
    return sorted(specs, key=lambda spec: spec.slug)


def parse_spec(data: Any, *, file: str = "<spec>", variables: Mapping[str, Any] | None = None) -> DatasetSpec:
    """Validate an already-parsed spec mapping (what `load_spec` reads from YAML)."""
    return _SpecParser(file, variables or {}).parse(data)


class _Fields:
    """Reads one mapping of a spec; records a problem for each missing, mistyped or unknown field."""

    def __init__(self, parser: _SpecParser, data: Any, path: str):
        self.parser = parser
        self.path = path
        self.data = data if isinstance(data, Mapping) else {}
        self.read: set[str] = set()
        if not isinstance(data, Mapping):
            parser.problem(path, "must be a mapping")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.read.add(key)
        return self.data.get(key)

    def text(self, key: str, *, required: bool = True, default: str | None = None) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                self.parser.problem(self.where(key), "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.parser.problem(self.where(key), "must be a non-empty string")
            return default
        return value.strip()

    def choice(self, key: str, choices: tuple[str, ...], *, required: bool = True) -> str | None:
        value = self.raw(key)
        if value is None and not required:
            return None
        if value not in choices:
            self.parser.problem(self.where(key), f"must be one of {', '.join(choices)} (got {value!r})")
            return None
        return value

    def integer(self, key: str, *, minimum: int, default: int | None = None, required: bool = True) -> int | None:
        value = self.raw(key)
        if value is None:
            if default is None and required:
                self.parser.problem(self.where(key), "is required")
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.parser.problem(self.where(key), f"must be an integer >= {minimum}")
            return default
        return value

    def strings(self, key: str, *, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.parser.problem(self.where(key), "must be a list of strings")
            return default
        if len(set(value)) != len(value):
            self.parser.problem(self.where(key), "lists a name more than once")
        return tuple(value)

    def mapping(self, key: str, *, required: bool = False) -> Any:
        value = self.raw(key)
        if value is None and required:
            self.parser.problem(self.where(key), "is required")
        return value

    def finish(self) -> None:
        for key in self.data:
            if key not in self.read:
                self.parser.problem(self.where(str(key)), "unknown field")


class _SpecParser:
    def __init__(self, file: str, variables: Mapping[str, Any]):
        self.file = file
        self.variables = variables
        self.problems: list[Problem] = []

    def problem(self, field_path: str, reason: str) -> None:
        self.problems.append(Problem(self.file, field_path, reason))

    def parse(self, data: Any) -> DatasetSpec:
        top = _Fields(self, data, "")
        slug = top.text("slug")
        if slug is not None and not _SLUG.fullmatch(slug):
            self.problem(
                "slug", "must be 2-63 characters: lower-case letters, digits, underscores, starting with a letter"
            )
        title = top.text("title")
        description = top.text("description")
        publisher = top.text("publisher")
        contact = top.text("contact")
        license_terms = top.text("license")
        keywords = top.strings("keywords")
        theme = top.text("theme")
        tier = top.choice("tier", TIERS)
        update_frequency = top.choice("update_frequency", UPDATE_FREQUENCIES)
        schedule = top.text("schedule")
        if schedule is not None and not croniter.is_valid(schedule):
            self.problem("schedule", f"not a valid cron expression: {schedule!r}")
        time_zone = top.text("time_zone", required=False, default=DEFAULT_TIME_ZONE)
        if time_zone not in zoneinfo.available_timezones():
            self.problem("time_zone", f"unknown time zone {time_zone!r}")
        source = self._source(top.mapping("source", required=True))
        references = self._references(top.mapping("references"))
        transform = self._transform(top.raw("transform"))
        columns = self._columns(top.raw("columns"))
        by_name = {column.name: column for column in columns}
        privacy = self._privacy(top.mapping("privacy"), by_name, tier)
        partitioning = self._column_list(top, "partitioning", by_name, roles=("dimension", "public"))
        sort_by = self._column_list(top, "sort_by", by_name)
        retention = _Fields(self, top.mapping("retention") or {}, "retention")
        versions_kept = retention.integer("versions_kept", minimum=1, default=DEFAULT_VERSIONS_KEPT)
        retention.finish()
        analysis = self._analysis(top.mapping("analysis"), by_name, tier, privacy)
        lookup = self._lookup(top.mapping("lookup"), by_name, tier)
        row_group_rows = top.integer(
            "row_group_rows",
            minimum=MIN_ROW_GROUP_ROWS,
            default=LOOKUP_ROW_GROUP_ROWS if tier == "lookup" else None,
            required=False,
        )
        if row_group_rows is not None and row_group_rows % MIN_ROW_GROUP_ROWS:
            # DuckDB would round it up: the files would not have the row groups the spec declares.
            self.problem("row_group_rows", f"must be a multiple of {MIN_ROW_GROUP_ROWS} (DuckDB's vector size)")
        time_column = self._time_column(top.text("time_column", required=False), by_name)
        history = self._history(top.mapping("history"))
        if lookup is not None and lookup.keys and sort_by[:1] != lookup.keys[:1]:
            self.problem("sort_by", f"a lookup dataset is sorted by its primary key first: [{lookup.keys[0]}, ...]")
        top.finish()
        self._check_tier(tier, columns)

        if self.problems:
            raise SpecError(self.problems)
        resolved = {**data, "source": {"kind": source.kind, "options": source.options}}
        if references:
            resolved["references"] = {
                name: {"kind": reference.kind, "options": reference.options} for name, reference in references.items()
            }
        fingerprint = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()
        return DatasetSpec(
            slug=slug,
            title=title,
            description=description,
            publisher=publisher,
            contact=contact,
            license=license_terms,
            keywords=keywords,
            theme=theme,
            tier=Tier(tier),
            update_frequency=update_frequency,
            schedule=schedule,
            time_zone=time_zone,
            source=source,
            transform=transform,
            columns=tuple(columns),
            privacy=privacy,
            partitioning=partitioning,
            sort_by=sort_by,
            versions_kept=versions_kept,
            analysis=analysis,
            lookup=lookup,
            row_group_rows=row_group_rows,
            references=references,
            time_column=time_column,
            history=history,
            file=self.file,
            fingerprint=fingerprint,
        )

    # --- source and transform ------------------------------------------------

    def _source(self, data: Any) -> SourceSpec:
        if data is None:
            return SourceSpec(kind="", options={})
        fields = _Fields(self, data, "source")
        kind = fields.text("kind")
        options = fields.mapping("options")
        if options is None:
            options = {}
        elif not isinstance(options, Mapping):
            self.problem("source.options", "must be a mapping")
            options = {}
        fields.finish()
        return SourceSpec(kind=kind or "", options=self._substitute(dict(options), "source.options"))

    def _references(self, data: Any) -> dict[str, SourceSpec]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            self.problem("references", "must be a mapping of table name to source")
            return {}
        references = {}
        for name, value in data.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "source":
                self.problem(f"references.{name}", "must be a lower-case SQL name other than `source`")
                continue
            fields = _Fields(self, value, f"references.{name}")
            kind = fields.text("kind")
            options = fields.mapping("options")
            if options is None:
                options = {}
            elif not isinstance(options, Mapping):
                self.problem(f"references.{name}.options", "must be a mapping")
                options = {}
            fields.finish()
            references[name] = SourceSpec(
                kind=kind or "", options=self._substitute(dict(options), f"references.{name}.options")
            )
        return references

    def _time_column(self, name: str | None, by_name: dict[str, ColumnSpec]) -> str | None:
        if name is None:
            return None
        column = by_name.get(name)
        if column is None or not column.published or column.type not in ("date", "timestamp", "timestamptz"):
            self.problem("time_column", f"must name a published date or timestamp column (got {name!r})")
            return None
        return name

    def _history(self, data: Any) -> HistorySpec | None:
        if data is None:
            return None
        fields = _Fields(self, data, "history")
        months = []
        for key in ("from", "to"):
            value = fields.text(key)
            try:
                months.append(dt.date.fromisoformat(f"{value}-01") if value else None)
            except ValueError:
                self.problem(f"history.{key}", f"must be a month, YYYY-MM (got {value!r})")
                months.append(None)
        published = _Fields(self, fields.mapping("published", required=True) or {}, "history.published")
        day = published.integer("day", minimum=1)
        if day is not None and day > 28:
            self.problem("history.published.day", "must be 1-28 (every month has it)")
        time = published.text("time", required=False, default="00:00")
        if time is not None and not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", time):
            self.problem("history.published.time", f"must be HH:MM (got {time!r})")
        published.finish()
        fields.finish()
        first, last = months
        if first and last and last < first:
            self.problem("history.to", "must not be before history.from")
        if None in (first, last, day, time):
            return None
        return HistorySpec(first_month=first, last_month=last, publish_day=day, publish_time=time)

    def _substitute(self, value: Any, path: str) -> Any:
        """Replace `${NAME}` / `${NAME:-default}`; a whole-value placeholder keeps the variable's type."""
        if isinstance(value, Mapping):
            return {key: self._substitute(item, f"{path}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [self._substitute(item, f"{path}[{index}]") for index, item in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def lookup(match: re.Match) -> Any:
            name, default = match.group(1), match.group(2)
            if name in self.variables:
                return self.variables[name]
            if default is not None:
                return yaml.safe_load(default) if default else ""
            self.problem(path, f"variable {name} is not set and has no default (write ${{{name}:-value}})")
            return None

        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return lookup(whole)
        return _PLACEHOLDER.sub(lambda match: str(lookup(match)), value)

    def _transform(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem("transform", "must be SQL text")
            return None
        try:
            statements = duckdb.extract_statements(value)
        except duckdb.Error as exc:
            self.problem("transform", f"does not parse: {exc}")
            return None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            self.problem("transform", "must be exactly one SELECT statement over the relation `source`")
            return None
        return value.strip().rstrip(";")

    # --- columns -------------------------------------------------------------

    def _columns(self, data: Any) -> list[ColumnSpec]:
        if not isinstance(data, list) or not data:
            self.problem("columns", "must be a non-empty list")
            return []
        columns: list[ColumnSpec] = []
        seen: set[str] = set()
        for index, item in enumerate(data):
            name = item.get("name") if isinstance(item, Mapping) else None
            path = f"columns[{name}]" if isinstance(name, str) and name else f"columns[{index}]"
            column = self._column(item, path)
            if column is None:
                continue
            if column.name in seen:
                self.problem(path, f"duplicate column name {column.name!r}")
                continue
            seen.add(column.name)
            columns.append(column)
        if columns and not any(column.published for column in columns):
            self.problem("columns", "no column is published")
        return columns

    def _column(self, data: Any, path: str) -> ColumnSpec | None:
        fields = _Fields(self, data, path)
        name = fields.text("name")
        if name is not None and not _NAME.fullmatch(name):
            self.problem(f"{path}.name", "must be a lower-case SQL name (letters, digits, underscores)")
        source = fields.text("from", required=False, default=name)
        if source is not None and not _NAME.fullmatch(source):
            self.problem(f"{path}.from", "must be a lower-case SQL name (letters, digits, underscores)")
        role = fields.choice("role", ROLES)
        description = fields.text("description")
        action = fields.choice("action", ACTIONS, required=False)
        column_type = fields.choice("type", tuple(COLUMN_TYPES), required=False)
        identifier = fields.choice("identifier", IDENTIFIER_KINDS, required=False)
        rule = None
        if (raw_rule := fields.raw("generalize")) is not None:
            try:
                rule = parse_rule(raw_rule)
            except RuleError as exc:
                for parameter, reason in exc.problems:
                    self.problem(f"{path}.generalize" + (f".{parameter}" if parameter else ""), reason)
        fields.finish()
        if None in (name, role, description):
            return None

        if role in ("identifier", "entity"):
            if role == "identifier" and action is None:
                self.problem(f"{path}.action", "an identifier must say action: drop or pseudonymize")
            if role == "entity" and action != "pseudonymize":
                self.problem(f"{path}.action", "an entity must be pseudonymized (action: pseudonymize)")
            if raw_rule is not None:
                self.problem(f"{path}.generalize", f"a {role} is dropped or pseudonymized, never generalized")
            if action == "pseudonymize" and column_type not in (None, "string"):
                self.problem(f"{path}.type", "a pseudonymized column is a string")
            if identifier is not None and action != "pseudonymize":
                self.problem(f"{path}.identifier", "only a pseudonymized column is matched as an identifier")
            column_type = "string"
        else:
            if action is not None:
                self.problem(f"{path}.action", "only identifier and entity columns take an action")
            if identifier is not None:
                self.problem(f"{path}.identifier", "only identifier and entity columns are matched as identifiers")
            if role == "quasi" and raw_rule is None:
                self.problem(f"{path}.generalize", "a quasi-identifier needs a generalization rule")
            if column_type is None:
                self.problem(f"{path}.type", f"is required (one of {', '.join(COLUMN_TYPES)})")
            elif rule is not None and column_type not in rule.output_types:
                self.problem(
                    f"{path}.type",
                    f"rule {rule.kind} produces {'/'.join(sorted(rule.output_types))}, not {column_type}",
                )
            for raw_name in sorted({name, source} & KNOWN_IDENTIFIER_NAMES):
                self.problem(
                    path,
                    f"would publish the raw identifier {raw_name!r}: declare it role identifier"
                    " (action drop or pseudonymize) or role entity",
                )
        return ColumnSpec(
            name=name,
            source=source or name,
            role=role,
            description=description,
            type=column_type or "string",
            action=action,
            generalize=rule,
            identifier=identifier,
        )

    def _column_list(
        self, fields: _Fields, key: str, by_name: dict[str, ColumnSpec], roles: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        names = fields.strings(key)
        for name in names:
            column = by_name.get(name)
            if column is None or not column.published:
                self.problem(fields.where(key), f"{name!r} is not a published column")
            elif roles and column.role not in roles:
                self.problem(fields.where(key), f"{name!r} has role {column.role}; allowed: {', '.join(roles)}")
        return names

    # --- privacy, analysis, lookup -------------------------------------------

    def _privacy(self, data: Any, by_name: dict[str, ColumnSpec], tier: str | None) -> PrivacySpec | None:
        quasi_columns = [column.name for column in by_name.values() if column.role == "quasi"]
        entity_columns = [column.name for column in by_name.values() if column.role == "entity"]
        if len(entity_columns) > 1:
            self.problem("columns", f"at most one entity column (got {', '.join(entity_columns)})")
        if data is None:
            if tier in ("aggregate", "lookup"):
                self.problem("privacy", f"is required for {tier} datasets")
            elif quasi_columns or entity_columns:
                self.problem("privacy", "is required when a column is a quasi-identifier or an entity")
            return None
        fields = _Fields(self, data, "privacy")
        k = fields.integer("k", minimum=2)
        quasi = fields.strings("quasi_identifiers")
        entity = fields.text("entity", required=False)
        fields.finish()
        for name in quasi:
            if name not in by_name:
                self.problem("privacy.quasi_identifiers", f"{name!r} is not a declared column")
            elif by_name[name].role != "quasi":
                self.problem("privacy.quasi_identifiers", f"{name!r} has role {by_name[name].role}, not quasi")
        for name in quasi_columns:
            if name not in quasi:
                self.problem("privacy.quasi_identifiers", f"quasi column {name!r} is missing from the list")
        if entity is not None and (entity not in by_name or by_name[entity].role != "entity"):
            self.problem("privacy.entity", f"{entity!r} is not a column with role entity")
        if entity is None and entity_columns:
            self.problem("privacy.entity", f"is required: name the entity column {entity_columns[0]!r}")
        if entity is None and tier == "aggregate":
            self.problem(
                "privacy.entity",
                "aggregate datasets need an entity column (results are thresholded on distinct entities)",
            )
        return PrivacySpec(k=k or 2, quasi_identifiers=quasi, entity=entity)

    def _analysis(
        self, data: Any, by_name: dict[str, ColumnSpec], tier: str | None, privacy: PrivacySpec | None
    ) -> AnalysisSpec | None:
        if tier != "aggregate":
            if data is not None:
                self.problem("analysis", "only aggregate datasets have analysis rules")
            return None
        published = [column for column in by_name.values() if column.published]
        fields = _Fields(self, data or {}, "analysis")
        aggregates = tuple(
            a.lower().replace(" ", "_") for a in fields.strings("aggregates", default=DEFAULT_AGGREGATES)
        )
        for aggregate in aggregates:
            if aggregate not in AGGREGATES:
                self.problem(
                    "analysis.aggregates", f"unknown aggregate {aggregate!r}; allowed: {', '.join(AGGREGATES)}"
                )
        dimension_roles = ("dimension", "quasi", "public")
        default_dimensions = tuple(c.name for c in published if c.role in dimension_roles)
        dimensions = self._column_list(fields, "dimensions", by_name, roles=dimension_roles) or default_dimensions
        default_measures = tuple(c.name for c in published if c.role == "measure")
        measures = self._column_list(fields, "measures", by_name, roles=("measure", "sensitive")) or default_measures
        for name in measures:
            if name in by_name and by_name[name].type not in NUMERIC:
                self.problem("analysis.measures", f"{name!r} is not numeric")
        join_keys = self._column_list(fields, "join_keys", by_name, roles=dimension_roles)
        k = privacy.k if privacy else 2
        min_entities = fields.integer("min_entities", minimum=k, default=k)
        fields.finish()
        return AnalysisSpec(
            aggregates=aggregates,
            dimensions=dimensions,
            measures=measures,
            join_keys=join_keys,
            min_entities=min_entities or k,
        )

    def _lookup(self, data: Any, by_name: dict[str, ColumnSpec], tier: str | None) -> LookupSpec | None:
        if tier != "lookup":
            if data is not None:
                self.problem("lookup", "only lookup datasets have a lookup section")
            return None
        fields = _Fields(self, data, "lookup")
        keys = fields.strings("keys")
        published = [column for column in by_name.values() if column.published]
        field_names = self._column_list(fields, "fields", by_name) or tuple(
            column.name for column in published if not column.pseudonymized
        )
        thresholds = self._column_list(fields, "thresholds", by_name)
        consent_scope = fields.text("consent_scope")
        cohort = self._cohort(fields.mapping("cohort"), by_name, field_names)
        fields.finish()
        if not keys:
            self.problem("lookup.keys", "name at least one pseudonymized identifier column to match on")
        for name in keys:
            column = by_name.get(name)
            if column is None or not column.pseudonymized or column.identifier is None:
                self.problem("lookup.keys", f"{name!r} is not a pseudonymized column with an identifier kind")
        kinds = [by_name[name].identifier for name in keys if name in by_name]
        if len(set(kinds)) != len(kinds):
            self.problem("lookup.keys", "one key per identifier kind")
        for name in field_names:
            if name in by_name and by_name[name].pseudonymized:
                self.problem("lookup.fields", f"{name!r} is a pseudonym: lookups never return one")
        for name in thresholds:
            if name not in field_names:
                self.problem("lookup.thresholds", f"{name!r} is not one of the lookup fields")
            elif by_name[name].type not in NUMERIC:
                self.problem("lookup.thresholds", f"{name!r} is not numeric")
        if consent_scope is not None and not _NAME.fullmatch(consent_scope):
            self.problem("lookup.consent_scope", "must be a lower-case name, e.g. credit_assessment")
        return LookupSpec(
            keys=keys, fields=field_names, thresholds=thresholds, consent_scope=consent_scope or "", cohort=cohort
        )

    def _cohort(self, data: Any, by_name: dict[str, ColumnSpec], field_names: tuple[str, ...]) -> CohortSpec | None:
        if data is None:
            return None
        fields = _Fields(self, data, "lookup.cohort")
        dimensions = self._column_list(
            fields, "dimensions", by_name, roles=("quasi", "dimension", "public", "sensitive")
        )
        measures = self._column_list(fields, "measures", by_name, roles=("sensitive", "measure"))
        fields.finish()
        for name in (*dimensions, *measures):
            if name not in field_names:
                self.problem("lookup.cohort", f"{name!r} is not one of the lookup fields")
        for name in measures:
            if name in by_name and by_name[name].type not in NUMERIC:
                self.problem("lookup.cohort.measures", f"{name!r} is not numeric")
        return CohortSpec(dimensions=dimensions, measures=measures)

    def _check_tier(self, tier: str | None, columns: list[ColumnSpec]) -> None:
        if tier != "open":
            return
        for column in columns:
            if column.published and column.role in _PERSON_ROLES:
                self.problem(
                    f"columns[{column.name}].role",
                    f"open datasets publish no person-level columns; role {column.role} is not allowed (use aggregate or lookup)",
                )
