"""Anonymization: keyed pseudonyms, generalization, and k-anonymity suppression, all inside DuckDB.

Pseudonyms are HMAC-SHA256 under a key derived per dataset and release:

    key       = HKDF-SHA256(master secret, salt=none, info="vitamin/pseudonym/{slug}/{release}", 32 bytes)
    pseudonym = hex(HMAC-SHA256(key, UTF-8 text of the value))[:32]     (128 bits)

The text of a value is DuckDB's `CAST(value AS VARCHAR)` (for integers, the same
as Python's `str()`); for a column with an identifier kind (a lookup key) it is the
SHA-256 of the normalized identifier (`datasets.identifiers`), so that the lookup
API can compute the same pseudonym from what a partner sends. DuckDB has no HMAC function, but HMAC is two hashes with
fixed key pads, so the build computes it with DuckDB's `sha256()` over BLOBs:
`sha256(opad || unhex(sha256(ipad || value)))`; the pads are bound as query
parameters (or read from a one-row temp table) so the key never appears in SQL
text. It runs once per distinct value, then joins back, which at 10M rows over
500k people is ~2.5x faster than hashing every row. A lookup key is the
exception: it is unique per row, so there is nothing to share, and the join
back would hold a hash table of every row in the same `COPY` as the sort by
that key; it is hashed in the row instead. `PseudonymKey.pseudonym()` is the
same function in Python, for the lookup API and for tests.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from datasets.generalize import REGION_TABLE
from datasets.identifiers import digest_sql
from datasets.privacy import GROUP_ID, create_entity_groups
from datasets.regions import region_names
from datasets.spec import COLUMN_TYPES, ColumnSpec, DatasetSpec
from datasets.sql import quote_identifier, sql_literal

PSEUDONYM_HEX_CHARS = 32  # 128 bits of the HMAC
MIN_MASTER_KEY_BYTES = 16
_BLOCK_BYTES = 64  # SHA-256 block size: HMAC pads the key to this length

STAGED_VIEW = "vitamin_staged"
STAGED_FILE = "staged.parquet"
# Fast to write and to read back, and still ~2.5x smaller than the rows in DuckDB's memory; zstd saves disk, not time.
STAGED_COMPRESSION = "lz4_raw"
ENTITIES_TABLE = "vitamin_entities"
KEY_TABLE = "vitamin_pseudonym_key"  # one row: the HMAC pads, for pseudonyms computed in a view (no parameters there)
KEPT_GROUPS_TABLE = "vitamin_kept_groups"
PUBLISHED_VIEW = "vitamin_published"


@dataclass(frozen=True)
class PseudonymKey:
    """The HMAC key of one dataset in one release."""

    key: bytes = field(repr=False)

    @classmethod
    def derive(cls, master_key: bytes, slug: str, release: str) -> PseudonymKey:
        if len(master_key) < MIN_MASTER_KEY_BYTES:
            raise ValueError(f"the pseudonym master key must be at least {MIN_MASTER_KEY_BYTES} bytes")
        if not release:
            raise ValueError("a release name is required")
        hkdf = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"vitamin/pseudonym/{slug}/{release}".encode()
        )
        return cls(hkdf.derive(master_key))

    def pseudonym(self, value: str) -> str:
        return hmac.new(self.key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]

    def sql_parameters(self) -> dict[str, bytes]:
        """The inner and outer HMAC pads, bound as `$pseudonym_ipad` / `$pseudonym_opad` in `pseudonym_sql`."""
        padded = self.key.ljust(_BLOCK_BYTES, b"\0")
        return {
            "pseudonym_ipad": bytes(byte ^ 0x36 for byte in padded),
            "pseudonym_opad": bytes(byte ^ 0x5C for byte in padded),
        }


def pseudonym_sql(value: str, ipad: str = "$pseudonym_ipad", opad: str = "$pseudonym_opad") -> str:
    """SQL computing the pseudonym of `value` (any type, hashed as its VARCHAR text); NULL stays NULL.

    `ipad` and `opad` are SQL for the pads: by default the query parameters of `PseudonymKey.sql_parameters()`.
    """
    message = f"encode(CAST({value} AS VARCHAR))"
    inner = f"unhex(sha256({ipad} || {message}))"
    return f"left(sha256({opad} || {inner}), {PSEUDONYM_HEX_CHARS})"


def install_reference_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the lookup tables generalization rules join against (the region names)."""
    con.register("vitamin_region_names_arrow", region_names())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REGION_TABLE} AS SELECT * FROM vitamin_region_names_arrow")
    con.unregister("vitamin_region_names_arrow")


def staging_sql(columns: tuple[ColumnSpec, ...], relation_sql: str) -> str:
    """SELECT of the published columns' values before pseudonymization: generalized and cast to their types.

    Two levels: the inner one computes each rule's prepared value once per row
    (an age from two dates), the outer one labels and casts it.
    """
    inner, outer = [], []
    for index, column in enumerate(columns):
        source, prepared = quote_identifier(column.source), quote_identifier(f"vitamin_in_{index}")
        rule = column.generalize
        inner.append(f"{rule.prepare(source) if rule else source} AS {prepared}")
        if column.pseudonymized and column.identifier:
            value = digest_sql(column.identifier, prepared)  # matchable by a lookup (datasets.identifiers)
        elif column.pseudonymized:
            value = f"CAST({prepared} AS VARCHAR)"
        else:
            value = f"CAST({rule.sql(prepared) if rule else prepared} AS {COLUMN_TYPES[column.type]})"
        outer.append(f"{value} AS {quote_identifier(column.name)}")
    return f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM ({relation_sql}) AS source_rows)"


@dataclass(frozen=True)
class Anonymized:
    """The anonymized rows, as a view in the build connection, and how many rows went in."""

    view: str
    rows_in: int
    tables: tuple[str, ...] = ()  # what the view reads besides the staged rows: one row per group or per identifier

    def drop(self, con: duckdb.DuckDBPyConnection) -> None:
        """Free the view's tables once its rows are written (they grow with the distinct identifiers)."""
        con.execute(f"DROP VIEW IF EXISTS {self.view}")
        for table in self.tables:
            con.execute(f"DROP TABLE IF EXISTS {table}")


def anonymize(
    con: duckdb.DuckDBPyConnection,
    spec: DatasetSpec,
    key: PseudonymKey,
    relation_sql: str,
    *,
    scratch_dir: str | Path,
) -> Anonymized:
    """Generalize, pseudonymize and k-suppress the rows of `relation_sql` into the view `vitamin_published`.

    k-anonymity needs every row before it can decide which to keep, and a source
    stream can be read only once, so the generalized rows are first streamed into
    one Parquet file in `scratch_dir` (which the connection must be allowed to
    write), not into a DuckDB table: a table would keep them in memory up to the
    memory limit, so a build's memory would grow with its rows. Everything after
    that reads the file back or works on small tables: the distinct (entity,
    quasi-identifiers) combinations decide which groups are kept, and each
    distinct identifier is hashed once; one final pass joins them back while
    writing. Memory then depends on the number of distinct entities, not rows.

    A lookup dataset's keys are unique per row: a table of their pseudonyms would
    have a row per row, and joining it back would build a hash table of every
    row in the same pipeline as the sort by the key, which then compete for the
    memory limit (at 10M rows and 1 GB, the build failed in two runs of three).
    They are hashed in the row instead, with the pads read from a one-row table.
    """
    columns = spec.published_columns
    staged = sql_literal(str(Path(scratch_dir) / STAGED_FILE))
    con.execute(
        f"COPY ({staging_sql(columns, relation_sql)}) TO {staged} (FORMAT parquet, COMPRESSION {STAGED_COMPRESSION})"
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW {STAGED_VIEW} AS SELECT * FROM read_parquet({staged})")
    rows_in = con.execute(f"SELECT count(*) FROM {STAGED_VIEW}").fetchall()[0][0]

    privacy = spec.privacy
    quasi = [quote_identifier(name) for name in privacy.quasi_identifiers] if privacy else []
    entity = quote_identifier(privacy.entity) if privacy and privacy.entity else None
    quasi_groups = None
    if entity:
        # One row per (entity, quasi-identifiers): ~20x fewer rows than transactions, and all k needs.
        quasi_groups = create_entity_groups(con, STAGED_VIEW, entity, quasi, ENTITIES_TABLE)

    rows, tables = STAGED_VIEW, []
    if quasi:
        # With an entity, k counts distinct people per group: one person's many transactions are not k people.
        if entity:
            kept = (
                f"SELECT {', '.join(quasi)} FROM {quasi_groups} WHERE {GROUP_ID} IN"
                f" (SELECT {GROUP_ID} FROM {ENTITIES_TABLE} GROUP BY {GROUP_ID} HAVING count({entity}) >= {int(privacy.k)})"
            )
        else:
            kept = f"SELECT {', '.join(quasi)} FROM {STAGED_VIEW} GROUP BY ALL HAVING count(*) >= {int(privacy.k)}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {KEPT_GROUPS_TABLE} AS {kept}")
        # IS NOT DISTINCT FROM: a NULL quasi-identifier is a group of its own, not a reason to drop the row.
        matches = " AND ".join(f"s.{q} IS NOT DISTINCT FROM g.{q}" for q in quasi)
        rows = f"(SELECT s.* FROM {STAGED_VIEW} AS s SEMI JOIN {KEPT_GROUPS_TABLE} AS g ON {matches})"
        tables.append(KEPT_GROUPS_TABLE)

    outputs, joins = [], []
    # A lookup key is unique per row: hashing each distinct value once saves nothing.
    per_row = set(spec.lookup.keys) if spec.lookup else set()
    if per_row & {column.name for column in columns if column.pseudonymized}:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {KEY_TABLE} AS SELECT $pseudonym_ipad AS ipad, $pseudonym_opad AS opad",
            key.sql_parameters(),
        )
        joins.append(f"CROSS JOIN {KEY_TABLE} AS k")
        tables.append(KEY_TABLE)
    for index, column in enumerate(columns):
        name = quote_identifier(column.name)
        if not column.pseudonymized:
            outputs.append(f"r.{name}")
            continue
        if column.name in per_row:
            outputs.append(f"{pseudonym_sql(f'r.{name}', 'k.ipad', 'k.opad')} AS {name}")
            continue
        table = f"vitamin_pseudonyms_{index}"
        values_from = ENTITIES_TABLE if name == entity else STAGED_VIEW
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT value, {pseudonym_sql('value')} AS pseudonym"
            f" FROM (SELECT DISTINCT {name} AS value FROM {values_from} WHERE {name} IS NOT NULL)",
            key.sql_parameters(),
        )
        joins.append(f"LEFT JOIN {table} AS p{index} ON p{index}.value = r.{name}")
        outputs.append(f"p{index}.pseudonym AS {name}")
        tables.append(table)
    # The kept groups and the pseudonyms are known: free what grows with the entities before the write.
    for table in filter(None, (ENTITIES_TABLE if entity else None, quasi_groups)):
        con.execute(f"DROP TABLE {table}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {PUBLISHED_VIEW} AS SELECT {', '.join(outputs)} FROM {rows} AS r {' '.join(joins)}"
    )
    return Anonymized(view=PUBLISHED_VIEW, rows_in=rows_in, tables=tuple(tables))
