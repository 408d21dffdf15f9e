"""The statement check: walk DuckDB's syntax tree with an allow-list, then hold its tables against the grants.

`inspect` walks the whole tree once, independent of who is asking. Every node
must be of a kind listed here (fail closed: a construct this module does not
know is refused as `unsupported_syntax`, however harmless it may be); every
function call must be on the allow-list in `datasets.query.functions`; table functions,
parameters and time travel are refused wherever they appear, including in
scalar subqueries. It returns the tables the statement reads, having resolved
which names are CTEs: a CTE is visible to the statement it belongs to and to
later CTEs of the same WITH; a recursive CTE sees itself only in its recursive
part (DuckDB resolves any other use of the name to the catalog).

`check_tables` then requires each table to be a granted dataset, referred to by
its bare name, and no CTE to be named like a dataset or a catalog object, so a
CTE can neither hide a dataset nor stand in for one.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets.query.bindings import DatasetBinding, Tier
from datasets.query.errors import Code, QueryRejected
from datasets.query.functions import AGGREGATE_FUNCTIONS, ALLOWED_FUNCTIONS, WINDOW_FUNCTIONS

QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE"})
TABLE_REFS = frozenset({"BASE_TABLE", "JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY"})
OTHER_NODES = frozenset(
    {
        "ORDER_MODIFIER",
        "LIMIT_MODIFIER",
        "DISTINCT_MODIFIER",
        "ORDER_DEFAULT",  # an ORDER BY item's direction
        "ASCENDING",
        "DESCENDING",
    }
)
EXPRESSIONS = frozenset(
    {
        "BETWEEN",
        "CASE",
        "CAST",
        "COLLATE",
        "COLUMN_REF",
        "COMPARISON",
        "CONJUNCTION",
        "CONSTANT",
        "FUNCTION",
        "LAMBDA",
        "OPERATOR",
        "POSITIONAL_REFERENCE",
        "STAR",
        "SUBQUERY",
        "TYPE",
        "WINDOW",
    }
)
# Schemas and name prefixes of DuckDB's own catalog views and table functions.
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog"})
SYSTEM_PREFIXES = ("duckdb_", "pragma_", "sqlite_", "pg_")
# In FROM, a quoted string is a file DuckDB would open ("replacement scan"); a dataset name has none of these.
_FILE_LIKE = re.compile(r"[/\\:.*?~]")

_UNSUPPORTED = "This form of query is not supported by the gateway."


@dataclass(frozen=True)
class TableRef:
    """A table the statement reads (not a CTE): `name` as written, lower-cased, and where."""

    name: str
    schema: str
    catalog: str
    position: int | None


@dataclass
class QueryShape:
    """What `inspect` learnt about a statement: its tree, the tables it reads and the CTEs it defines."""

    statement: dict[str, Any]
    tables: list[TableRef] = field(default_factory=list)
    cte_names: list[tuple[str, int | None]] = field(default_factory=list)

    @property
    def row_limit(self) -> int | None:
        """The statement's own top-level `LIMIT n`, when n is a plain non-negative number of rows."""
        for modifier in self.statement["node"].get("modifiers", []):
            limit = modifier.get("limit") if modifier.get("type") == "LIMIT_MODIFIER" else None
            if limit and modifier.get("limit_type") == "ROW_COUNT" and limit.get("class") == "CONSTANT":
                literal = limit.get("literal") or {}
                if literal.get("kind") == "INTEGER" and str(literal.get("text", "")).isdigit():
                    return int(literal["text"])
        return None

    @property
    def dataset_names(self) -> frozenset[str]:
        """The bare names the statement reads: what the caller has to look up grants for."""
        return frozenset(
            t.name for t in self.tables if not t.schema and not t.catalog and not _FILE_LIKE.search(t.name)
        )


def position_of(node: Mapping[str, Any]) -> int | None:
    """1-based character position of a node in the partner's SQL, when DuckDB recorded one."""
    location = node.get("query_location")
    if isinstance(location, int) and 0 <= location < 2**32:
        return location + 1
    return None


def inspect(statement: dict[str, Any]) -> QueryShape:
    """Walk the whole statement; raise `QueryRejected` at the first construct that is not allowed."""
    shape = QueryShape(statement)
    _Walker(shape).visit_query(statement["node"], frozenset())
    return shape


def check_tables(shape: QueryShape, bindings: Mapping[str, DatasetBinding], reserved_names: Collection[str]) -> None:
    """Every table read must be a granted, queryable dataset; no CTE may be named like one or like a catalog object."""
    granted = {slug.lower() for slug in bindings}
    for name, position in shape.cte_names:
        if name in granted or name in reserved_names or name.startswith(SYSTEM_PREFIXES):
            raise QueryRejected(
                Code.CTE_NAME_CONFLICT,
                f'The CTE name "{name}" is the name of a dataset or catalog table; choose another name.',
                position,
            )
    by_name = {slug.lower(): binding for slug, binding in bindings.items()}
    for table in shape.tables:
        _check_table(table, by_name, reserved_names)


def _check_table(table: TableRef, by_name: Mapping[str, DatasetBinding], reserved_names: Collection[str]) -> None:
    if table.schema in SYSTEM_SCHEMAS or table.catalog == "system":
        raise QueryRejected(
            Code.CATALOG_NOT_ALLOWED, "DuckDB's catalog is not available; see the dataset catalog API.", table.position
        )
    if table.schema or table.catalog:
        raise QueryRejected(
            Code.QUALIFIED_NAME_NOT_ALLOWED,
            "Refer to datasets by their name alone, without a schema or database.",
            table.position,
        )
    binding = by_name.get(table.name)
    if binding is not None:
        if binding.tier not in (Tier.OPEN, Tier.AGGREGATE):
            raise QueryRejected(
                Code.DATASET_NOT_QUERYABLE,
                f'The dataset "{table.name}" is a lookup dataset: it is read one consenting customer at a time, not by SQL.',
                table.position,
            )
        return
    if _FILE_LIKE.search(table.name):
        raise QueryRejected(
            Code.FILE_ACCESS_NOT_ALLOWED, "Files and URLs cannot be read; query a dataset by name.", table.position
        )
    if table.name in reserved_names or table.name.startswith(SYSTEM_PREFIXES):
        raise QueryRejected(
            Code.CATALOG_NOT_ALLOWED, "DuckDB's catalog is not available; see the dataset catalog API.", table.position
        )
    raise QueryRejected(
        Code.TABLE_NOT_GRANTED,
        f'"{table.name}" is not a dataset granted to you (or it does not exist).',
        table.position,
    )


class _Walker:
    """One pass over the tree. `visible` is the set of CTE names in scope at each point."""

    def __init__(self, shape: QueryShape):
        self.shape = shape

    # -- query nodes: the only place scope changes ------------------------------------------------

    def visit_query(self, node: Any, visible: frozenset[str]) -> None:
        kind = node.get("type") if isinstance(node, dict) else None
        if kind not in QUERY_NODES:
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, _UNSUPPORTED)
        for entry in node.get("cte_map", {}).get("map", []):
            name = str(entry["key"]).lower()
            self.shape.cte_names.append((name, None))
            definition = entry["value"]
            for key, value in definition.items():
                if key == "query_node":
                    self.visit_query(value, visible)
                else:
                    self.visit(value, visible)
            visible = visible | {name}  # later CTEs and the body see it
        for key, value in node.items():
            if key == "cte_map":
                continue
            if kind == "RECURSIVE_CTE_NODE" and key == "right":
                self.visit_query(value, visible | {str(node["cte_name"]).lower()})
            elif kind == "RECURSIVE_CTE_NODE" and key == "left":
                self.visit_query(value, visible)
            elif kind == "SET_OPERATION_NODE" and key in ("left", "right", "children"):
                for child in value if isinstance(value, list) else [value]:
                    if child is not None:
                        self.visit_query(child, visible)
            else:
                self.visit(value, visible)

    # -- everything else: generic, but every dict with a tag must have a known tag ----------------

    def visit(self, value: Any, visible: frozenset[str]) -> None:
        if isinstance(value, list):
            for item in value:
                self.visit(item, visible)
            return
        if not isinstance(value, dict):
            return
        if "class" in value:
            self.visit_expression(value, visible)
        elif isinstance(value.get("type"), str):
            kind = value["type"]
            if kind in QUERY_NODES:
                self.visit_query(value, visible)
                return
            if kind in TABLE_REFS:
                self.visit_table_ref(value, visible)
            elif kind == "TABLE_FUNCTION":
                raise QueryRejected(
                    Code.TABLE_FUNCTION_NOT_ALLOWED,
                    "Table functions (read_parquet, read_csv, glob, range, query, ...) are not allowed; "
                    "query datasets by name.",
                    position_of(value),
                )
            elif kind == "SHOW_REF":
                raise QueryRejected(
                    Code.CATALOG_NOT_ALLOWED,
                    "DESCRIBE, SHOW and SUMMARIZE are not available; see the dataset catalog API.",
                    position_of(value),
                )
            elif kind not in OTHER_NODES:
                raise QueryRejected(Code.UNSUPPORTED_SYNTAX, _UNSUPPORTED, position_of(value))
            self.visit_children(value, visible)
        else:
            self.visit_children(value, visible)

    def visit_children(self, node: dict[str, Any], visible: frozenset[str]) -> None:
        for value in node.values():
            if isinstance(value, dict | list):
                self.visit(value, visible)

    def visit_table_ref(self, ref: dict[str, Any], visible: frozenset[str]) -> None:
        if ref.get("at_clause"):
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, "AT (time travel) is not supported.", position_of(ref))
        if ref["type"] != "BASE_TABLE":
            return
        name = str(ref["table_name"]).lower()
        schema = str(ref.get("schema_name") or "").lower()
        catalog = str(ref.get("catalog_name") or "").lower()
        if not schema and not catalog and name in visible:
            return  # a CTE in scope
        self.shape.tables.append(TableRef(name, schema, catalog, position_of(ref)))

    def visit_expression(self, expression: dict[str, Any], visible: frozenset[str]) -> None:
        kind = expression["class"]
        if kind not in EXPRESSIONS:
            if kind == "PARAMETER":
                raise QueryRejected(
                    Code.PARAMETER_NOT_ALLOWED, "Query parameters ($1, ?) are not supported.", position_of(expression)
                )
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, _UNSUPPORTED, position_of(expression))
        if kind in ("FUNCTION", "WINDOW"):
            self.check_function(expression)
        elif kind == "TYPE" and (expression.get("schema") or expression.get("catalog")):
            raise QueryRejected(
                Code.QUALIFIED_NAME_NOT_ALLOWED, "Use DuckDB's built-in type names only.", position_of(expression)
            )
        self.visit_children(expression, visible)

    def check_function(self, call: dict[str, Any]) -> None:
        name = str(call.get("function_name", "")).lower()
        allowed = ALLOWED_FUNCTIONS if call["class"] == "FUNCTION" else AGGREGATE_FUNCTIONS | WINDOW_FUNCTIONS
        qualified = call.get("schema") or call.get("catalog")
        if qualified or call.get("export_state") or name not in allowed:
            raise QueryRejected(
                Code.FUNCTION_NOT_ALLOWED,
                f'The function "{name}" is not available in partner queries.',
                position_of(call),
            )
