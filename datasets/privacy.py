"""The privacy report of a built version, computed from the Parquet files actually written, not from the spec's intentions.

It measures the k achieved on the quasi-identifiers, counts suppressed rows and
distinct entities, lists what was dropped, pseudonymized and generalized, and
scans the output for values that look like direct identifiers (resident ID
numbers with a valid check character, mainland mobile numbers). A report that
does not pass fails the build, and a failed build publishes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import duckdb

from datasets.identifiers import ID_CHECK_CHARACTERS as _ID_CHECK_CHARACTERS
from datasets.identifiers import ID_WEIGHTS as _ID_WEIGHTS
from datasets.spec import DatasetSpec
from datasets.sql import quote_identifier

# An 18-character resident ID standing alone: not inside a longer run of letters or digits (a hex pseudonym).
RESIDENT_ID_PATTERN = r"(?:^|[^0-9A-Za-z])([0-9]{17}[0-9Xx])(?:[^0-9A-Za-z]|$)"
# A mainland mobile number (1[3-9] + 9 digits), optionally with +86, standing alone.
MOBILE_PATTERN = r"(?:^|[^0-9A-Za-z])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?:[^0-9A-Za-z]|$)"
# Integer types are scanned too: a phone number fits in a BIGINT.
_SCANNED_TYPES = ("VARCHAR", "BIGINT", "INTEGER", "HUGEINT", "UBIGINT")
WRITTEN_ENTITIES_TABLE = "vitamin_written_entities"
GROUP_ID = "vitamin_group_id"


@dataclass(frozen=True)
class IdentifierFinding:
    column: str
    kind: str  # "resident_id" or "mobile"
    values: int  # distinct values of the column that contain one


@dataclass(frozen=True)
class PrivacyReport:
    k_required: int | None
    k_achieved: (
        int | None
    )  # smallest quasi-identifier group (distinct entities, or rows without an entity); None: no quasi
    quasi_identifiers: tuple[str, ...]
    entity_column: str | None
    distinct_entities: int | None
    rows_in: int
    rows_published: int
    columns_dropped: tuple[str, ...]  # source columns no published column is computed from
    columns_pseudonymized: tuple[str, ...]
    columns_generalized: dict[str, str]  # published column -> rule
    identifier_findings: tuple[IdentifierFinding, ...]

    @property
    def rows_suppressed(self) -> int:
        return self.rows_in - self.rows_published

    @property
    def problems(self) -> list[str]:
        problems = [
            f"column {finding.column!r} holds {finding.values} distinct value(s) containing a {finding.kind.replace('_', ' ')}"
            for finding in self.identifier_findings
        ]
        if self.k_required is not None and self.k_achieved is not None and self.k_achieved < self.k_required:
            problems.append(f"k achieved is {self.k_achieved}, below the required {self.k_required}")
        return problems

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rows_suppressed"] = self.rows_suppressed
        data["passed"] = self.passed
        return data


def install_identifier_macros(con: duckdb.DuckDBPyConnection) -> None:
    """`vitamin_is_resident_id(text)`: 18 characters, a real birth date, and a valid ISO 7064 check character."""
    weighted_sum = " + ".join(f"(ascii(substr(x, {i + 1}, 1)) - 48) * {weight}" for i, weight in enumerate(_ID_WEIGHTS))
    con.execute(
        "CREATE OR REPLACE TEMP MACRO vitamin_is_resident_id(x) AS"
        " regexp_full_match(x, '[0-9]{17}[0-9Xx]')"
        " AND try_strptime(substr(x, 7, 8), '%Y%m%d') IS NOT NULL"
        f" AND substr('{_ID_CHECK_CHARACTERS}', CAST(({weighted_sum}) % 11 AS INTEGER) + 1, 1) = upper(substr(x, 18, 1))"
    )


def create_entity_groups(
    con: duckdb.DuckDBPyConnection, relation_sql: str, entity: str, quasi: list[str], table: str
) -> str | None:
    """Create `table`: the distinct (entity, quasi-identifier combination) pairs of `relation_sql`, all k needs.

    Each combination is a number, `vitamin_group_id`, that the returned table
    (`{table}_groups`) maps back to the quasi-identifier values; without
    quasi-identifiers `table` holds the distinct entities and None is returned.
    These tables grow with the distinct entities (2M at 40M demo rows), not the
    rows; grouping by a number instead of the values takes half the memory.
    `entity` and `quasi` are quoted column names.
    """
    if not quasi:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT {entity} FROM {relation_sql}")
        return None
    groups = f"{table}_groups"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {groups} AS SELECT row_number() OVER () AS {GROUP_ID}, *"
        f" FROM (SELECT DISTINCT {', '.join(quasi)} FROM {relation_sql})"
    )
    # IS NOT DISTINCT FROM: a NULL quasi-identifier is a combination of its own.
    matches = " AND ".join(f"r.{q} IS NOT DISTINCT FROM g.{q}" for q in quasi)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT r.{entity} AS {entity}, g.{GROUP_ID}"
        f" FROM {relation_sql} AS r JOIN {groups} AS g ON {matches} GROUP BY ALL"
    )
    return groups


def scan_identifiers(con: duckdb.DuckDBPyConnection, values_sql: str, column: str) -> list[IdentifierFinding]:
    """Distinct values of `column` (read from `values_sql`) that contain a resident ID or a mobile number.

    Distinct values, not rows: most columns have few of them, so the regular
    expressions run over thousands of strings instead of millions of rows.
    """
    # The cheap regex first; the check-character test runs only on the few values that match it.
    resident_id = (
        f"regexp_matches(v, '{RESIDENT_ID_PATTERN}')"
        f" AND len(list_filter(regexp_extract_all(v, '{RESIDENT_ID_PATTERN}', 1), lambda x: vitamin_is_resident_id(x))) > 0"
    )
    resident_ids, mobiles = con.execute(
        f"SELECT count(*) FILTER (WHERE {resident_id}), count(*) FILTER (WHERE regexp_matches(v, '{MOBILE_PATTERN}'))"
        f" FROM (SELECT DISTINCT CAST({quote_identifier(column)} AS VARCHAR) AS v FROM {values_sql})"
    ).fetchall()[0]
    return [
        IdentifierFinding(column=column, kind=kind, values=count)
        for kind, count in (("resident_id", resident_ids), ("mobile", mobiles))
        if count
    ]


def privacy_report(
    con: duckdb.DuckDBPyConnection,
    relation_sql: str,
    spec: DatasetSpec,
    *,
    rows_in: int,
    source_columns: list[str],
) -> PrivacyReport:
    """Measure the written output (`relation_sql` reads the staged Parquet files)."""
    privacy = spec.privacy
    quasi = [quote_identifier(name) for name in privacy.quasi_identifiers] if privacy else []
    entity = quote_identifier(privacy.entity) if privacy and privacy.entity else None
    rows_published = con.execute(f"SELECT count(*) FROM {relation_sql}").fetchall()[0][0]

    k_achieved = distinct_entities = quasi_groups = None
    if entity:
        # The distinct (entity, quasi-identifiers) combinations of the output, read once; k and entity counts come from it.
        quasi_groups = create_entity_groups(con, relation_sql, entity, quasi, WRITTEN_ENTITIES_TABLE)
        distinct_entities = con.execute(f"SELECT count(DISTINCT {entity}) FROM {WRITTEN_ENTITIES_TABLE}").fetchall()[0][
            0
        ]
    if quasi:
        groups, size, keys = (
            (WRITTEN_ENTITIES_TABLE, f"count({entity})", GROUP_ID)
            if entity
            else (relation_sql, "count(*)", ", ".join(quasi))
        )
        k_achieved = con.execute(
            f"SELECT min(size) FROM (SELECT {size} AS size FROM {groups} GROUP BY {keys})"
        ).fetchall()[0][0]

    written_types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()}
    findings: list[IdentifierFinding] = []
    for name, duck_type in written_types.items():
        # Measures are not scanned: sums and counts reach 10^10 and would look like phone numbers.
        if duck_type in _SCANNED_TYPES and spec.column(name).role != "measure":
            values_from = WRITTEN_ENTITIES_TABLE if quote_identifier(name) == entity else relation_sql
            findings += scan_identifiers(con, values_from, name)
    for table in filter(None, (WRITTEN_ENTITIES_TABLE if entity else None, quasi_groups)):
        con.execute(f"DROP TABLE {table}")  # they grow with the entities: free them for what follows

    published_sources = {c.source for c in spec.published_columns}
    return PrivacyReport(
        k_required=privacy.k if privacy else None,
        k_achieved=k_achieved,
        quasi_identifiers=tuple(privacy.quasi_identifiers) if privacy else (),
        entity_column=privacy.entity if privacy else None,
        distinct_entities=distinct_entities,
        rows_in=rows_in,
        rows_published=rows_published,
        columns_dropped=tuple(sorted(set(source_columns) - published_sources)),
        columns_pseudonymized=tuple(c.name for c in spec.pseudonymized_columns),
        columns_generalized={
            c.name: c.generalize.describe() for c in spec.published_columns if c.generalize is not None
        },
        identifier_findings=tuple(findings),
    )
