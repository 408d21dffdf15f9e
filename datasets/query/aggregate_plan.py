"""The aggregate tier's plan: groups below k are dropped before any partner expression sees them.

A partner query over an aggregate dataset runs as two stages on one pooled
connection, so that nothing the partner wrote is evaluated on a group that the
k threshold removes, and no outcome (rows, error, or the kind of error) depends
on such a group:

1. Groups (`prepare`): DuckDB builds the group table from the partner's FROM,
   WHERE and GROUP BY with the aggregates the partner named, each over a bare
   column (the aggregate rules allow nothing else), into a TEMP table. Row-level
   expressions (WHERE, GROUP BY, and select items GROUP BY refers to) are each
   wrapped in `TRY(...)`, so a row on which one would fail counts as NULL for
   that row instead of raising, and they may call only functions whose cost does
   not depend on an argument's value (`functions.ROW_LEVEL_FUNCTIONS`). Join
   keys compared by ON/USING must have the same type on both sides (an implicit
   cast could fail on a value). Nothing in this stage can raise on data.

   The threshold: per group, `bit_count(bit_or(bit))` over a per-row bit (one
   of 64, chosen by the entity's hash and stored at publish, see
   `datasets.spec.ENTITY_BUCKET_COLUMN` and `sandbox.view_sql`) is a lower bound
   of the number of distinct entities (equal entities set equal bits), and a
   group whose bound reaches k is released at once: exact, never an estimate
   (with k above 64 no group takes this path). The other groups are counted
   exactly (`count(DISTINCT entity) >= k`) in a second pass over the rows of
   those groups only. The second pass always runs, so the work done does not
   switch on whether a small group exists. The released groups are then copied, in key order, into a table of
   their own: DuckDB's optimizer folds expressions using a table's min/max
   statistics, which a DELETE would leave describing the removed groups too, and
   the order in which rows come out of an unordered query would depend on the
   hash table that also held them.

2. Answer (`answer`): the partner's SELECT list, HAVING (as WHERE), DISTINCT,
   ORDER BY and LIMIT, evaluated over the released groups only: every aggregate
   is replaced by its column in the released table and every GROUP BY expression
   by its key column. An expression there may raise (say, a cast of a large sum),
   but only on released groups, whose values the partner could read anyway.

What this does not hide: how long a query takes and how much memory it needs
depend on the data as a whole, as in any database; and answers over overlapping
released groups can be differenced (see docs/privacy.md).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Protocol

from datasets.query.checker import position_of
from datasets.query.errors import Code, QueryRejected
from datasets.query.functions import AGGREGATE_FUNCTIONS, ROW_LEVEL_FUNCTIONS
from datasets.sql import quote_identifier

GROUPS_TABLE = "__vitamin_groups"
EXACT_TABLE = "__vitamin_exact"
RELEASED_TABLE = "__vitamin_released"
SCRATCH_TABLES = (GROUPS_TABLE, EXACT_TABLE, RELEASED_TABLE)
ENTITY_BIT_COLUMN = "__vitamin_entity_bit"

_SLOT = "__vitamin_slot_"
_IGNORED_KEYS = frozenset({"query_location", "query_location_length", "alias"})


class Parser(Protocol):
    def parse(self, sql: str) -> dict[str, Any]: ...

    def render(self, statement: dict[str, Any]) -> str: ...


class CheckedAggregateQuery(Protocol):
    """What the aggregate rules learned about the query (`aggregate_rules.AggregateQuery`)."""

    sources: list[Any]  # _Source: .name, .binding, .is_aggregate
    join_keys: list[tuple[tuple[str, str], tuple[str, str]]]

    def resolve(self, column: dict[str, Any], *, allow_unknown: bool = False) -> list[tuple[Any, str]]: ...


@dataclass(frozen=True)
class AggregatePlan:
    """The statements that leave only released groups in GROUPS_TABLE, then the partner's answer over them."""

    prepare: tuple[str, ...]
    answer: str
    join_keys: tuple[tuple[tuple[str, str], tuple[str, str]], ...]  # (slug, column) pairs: same type required


def plan(statement: dict[str, Any], query: CheckedAggregateQuery, parser: Parser) -> AggregatePlan:
    return _Planner(statement, query, parser).build()


class _Planner:
    def __init__(self, statement: dict[str, Any], query: CheckedAggregateQuery, parser: Parser):
        self.statement = statement
        self.node = statement["node"]
        self.query = query
        self.parser = parser
        self.select = self.node["select_list"]
        self.aliases = {str(item["alias"]).lower(): item for item in self.select if item.get("alias")}
        self.groups: list[dict[str, Any]] = []
        self.group_index: dict[str, int] = {}
        self.aggregates: list[dict[str, Any]] = []
        self.aggregate_index: dict[str, int] = {}

    def build(self) -> AggregatePlan:
        for expression in self._group_expressions():
            expression = self._expand_aliases(expression)
            self._require_row_level(expression, "GROUP BY")
            key = self._key(expression)
            if key not in self.group_index:
                self.group_index[key] = len(self.groups)
                self.groups.append(expression)
        where = self.node.get("where_clause")
        if where is not None:
            where = self._expand_aliases(where)
            self._require_row_level(where, "WHERE")
        answer = self._answer()  # collects the aggregates the answer needs
        return AggregatePlan(self._prepare(where), answer, tuple(self.query.join_keys))

    # -- the group table --------------------------------------------------------------------------

    def _group_expressions(self) -> list[dict[str, Any]]:
        if self.node.get("aggregate_handling") == "FORCE_AGGREGATES":  # GROUP BY ALL
            return [_without_alias(item) for item in self.select if not _contains_aggregate(item)]
        groups = []
        for expression in self.node.get("group_expressions") or []:
            position = _positional(expression)
            if position is not None and 1 <= position <= len(self.select):
                expression = _without_alias(self.select[position - 1])
            groups.append(expression)
        return groups

    def _expand_aliases(self, expression: dict[str, Any]) -> dict[str, Any]:
        """Select-list aliases used in WHERE or GROUP BY, replaced by what they name (DuckDB's binding)."""
        if expression.get("class") == "COLUMN_REF":
            names = expression["column_names"]
            item = self.aliases.get(str(names[0]).lower()) if len(names) == 1 else None
            if item is not None and not self.query.resolve(expression, allow_unknown=True):
                return _without_alias(item)
            return expression
        return _map_children(expression, self._expand_aliases)

    def _require_row_level(self, expression: dict[str, Any], clause: str) -> None:
        if expression.get("class") == "FUNCTION":
            name = str(expression["function_name"]).lower()
            if name not in ROW_LEVEL_FUNCTIONS and name not in AGGREGATE_FUNCTIONS:
                raise QueryRejected(
                    Code.FUNCTION_NOT_ALLOWED,
                    f'"{name}" is not allowed in {clause} on aggregate datasets: there it runs on every row, '
                    "and its cost depends on its arguments. Use it in the select list or HAVING instead.",
                    position_of(expression),
                )
        _map_children(expression, lambda child: self._require_row_level(child, clause) or child)

    def _prepare(self, where: dict[str, Any] | None) -> tuple[str, ...]:
        aggregate_sources = [s for s in self.query.sources if s.is_aggregate]
        slots: dict[str, dict[str, Any]] = {"where": _try(self._parse_expression("true") if where is None else where)}
        group_slots = []
        for i, expression in enumerate(self.groups):
            slots[f"g{i}"] = _try(expression)
            group_slots.append(f"{_SLOT}g{i}")
        for j, aggregate in enumerate(self.aggregates):
            slots[f"a{j}"] = aggregate
        keys = [f"__vitamin_g{i}" for i in range(len(self.groups))]
        group_by = f" GROUP BY {', '.join(group_slots)}" if group_slots else ""
        uncertain = " OR ".join(
            f"__vitamin_b{n} < {int(s.binding.analysis.min_entities)}" for n, s in enumerate(aggregate_sources)
        )
        exact = " AND ".join(
            f"count(DISTINCT {quote_identifier(s.name)}.{quote_identifier(s.binding.entity)}) >= "
            f"{int(s.binding.analysis.min_entities)}"
            for s in aggregate_sources
        )

        columns = [f"{slot} AS {key}" for slot, key in zip(group_slots, keys, strict=True)]
        columns += [f"{_SLOT}a{j} AS __vitamin_a{j}" for j in range(len(self.aggregates))]
        columns += [
            f"coalesce(bit_count(bit_or({quote_identifier(s.name)}.{ENTITY_BIT_COLUMN})), 0) AS __vitamin_b{n}"
            for n, s in enumerate(aggregate_sources)
        ]
        groups_sql = f"SELECT {', '.join(columns)} FROM {_SLOT}from WHERE {_SLOT}where{group_by}"

        in_uncertain = ""
        if group_slots:
            in_uncertain = (
                f" AND hash({', '.join(group_slots)}) IN "
                f"(SELECT hash({', '.join(keys)}) FROM {GROUPS_TABLE} WHERE {uncertain})"
            )
        exact_columns = [f"{slot} AS {key}" for slot, key in zip(group_slots, keys, strict=True)] or [
            "1 AS __vitamin_one"
        ]
        exact_sql = (
            f"SELECT {', '.join(exact_columns)} FROM {_SLOT}from WHERE {_SLOT}where{in_uncertain}{group_by} "
            f"HAVING {exact}"
        )
        matched = " AND ".join(f"e.{key} IS NOT DISTINCT FROM g.{key}" for key in keys) or "true"
        released = [*keys, *(f"__vitamin_a{j}" for j in range(len(self.aggregates)))]
        order = f" ORDER BY {', '.join(keys)}" if keys else ""
        return (
            f"CREATE OR REPLACE TEMP TABLE {GROUPS_TABLE} AS {self._render(groups_sql, slots)}",
            f"CREATE OR REPLACE TEMP TABLE {EXACT_TABLE} AS {self._render(exact_sql, slots)}",
            f"CREATE OR REPLACE TEMP TABLE {RELEASED_TABLE} AS SELECT {', '.join(released)} FROM {GROUPS_TABLE} AS g "
            f"WHERE NOT ({uncertain}) OR EXISTS (SELECT 1 FROM {EXACT_TABLE} AS e WHERE {matched}){order}",
        )

    def _render(self, template: str, slots: dict[str, dict[str, Any]]) -> str:
        statement = self.parser.parse(template)
        node = statement["node"]
        node["from_table"] = copy.deepcopy(self.node["from_table"])
        statement["node"] = _fill(node, slots)
        return self.parser.render(statement)

    def _parse_expression(self, sql: str) -> dict[str, Any]:
        return self.parser.parse(f"SELECT {sql}")["node"]["select_list"][0]

    # -- the answer -------------------------------------------------------------------------------

    def _answer(self) -> str:
        node = copy.deepcopy(self.node)
        node["select_list"] = [self._output(item) for item in self.select]
        having = self.node.get("having")
        node["where_clause"] = None if having is None else self._lift(having, aliases=True)
        node["group_expressions"], node["group_sets"] = [], []
        node["aggregate_handling"], node["having"] = "STANDARD_HANDLING", None
        for modifier in node.get("modifiers", []):
            for order in modifier.get("orders") or []:
                order["expression"] = self._lift(order["expression"], aliases=True)
            if modifier.get("distinct_on_targets"):
                modifier["distinct_on_targets"] = [
                    self._lift(target, aliases=True) for target in modifier["distinct_on_targets"]
                ]
        node["from_table"] = self.parser.parse(f"SELECT 1 FROM {RELEASED_TABLE}")["node"]["from_table"]
        return self.parser.render({**self.statement, "node": node})

    def _output(self, item: dict[str, Any]) -> dict[str, Any]:
        """A select item over the group table, under the name DuckDB gives the original item."""
        name = item.get("alias") or self._output_name(item)
        lifted = self._lift(item, aliases=False)
        lifted["alias"] = name
        return lifted

    def _output_name(self, item: dict[str, Any]) -> str:
        if item.get("class") == "COLUMN_REF":
            return str(item["column_names"][-1])
        statement = self.parser.parse("SELECT 1")
        statement["node"]["select_list"] = [_without_alias(item)]
        return self.parser.render(statement).removeprefix("SELECT ")

    def _lift(self, expression: dict[str, Any], *, aliases: bool) -> dict[str, Any]:
        """`expression` over the group table: GROUP BY expressions and aggregates become its columns."""
        key = self._key(expression)
        if key in self.group_index:
            return self._column(f"__vitamin_g{self.group_index[key]}", expression)
        kind = expression.get("class")
        if kind == "FUNCTION" and str(expression["function_name"]).lower() in AGGREGATE_FUNCTIONS:
            if key not in self.aggregate_index:
                self.aggregate_index[key] = len(self.aggregates)
                self.aggregates.append(_without_alias(expression))
            return self._column(f"__vitamin_a{self.aggregate_index[key]}", expression)
        if kind == "COLUMN_REF":
            names = expression["column_names"]
            is_alias = aliases and len(names) == 1 and str(names[0]).lower() in self.aliases
            if is_alias and not self.query.resolve(expression, allow_unknown=True):
                return copy.deepcopy(expression)
            raise QueryRejected(
                Code.COLUMN_NOT_GROUPED,
                f'"{".".join(map(str, names))}" must appear in GROUP BY or inside an aggregate.',
                position_of(expression),
            )
        return _map_children(expression, lambda child: self._lift(child, aliases=aliases))

    def _column(self, name: str, original: dict[str, Any]) -> dict[str, Any]:
        column = self._parse_expression(name)
        column["alias"] = original.get("alias", "")
        return column

    def _key(self, expression: dict[str, Any]) -> str:
        """Equal for two expressions that mean the same (positions, aliases and column spelling aside)."""

        def canonical(value: Any) -> Any:
            if isinstance(value, dict):
                if value.get("class") == "COLUMN_REF":
                    found = self.query.resolve(value, allow_unknown=True)
                    if found:
                        return ["column", sorted({(source.name, name.lower()) for source, name in found})]
                    return ["name", [str(n).lower() for n in value["column_names"]]]
                return {k: canonical(v) for k, v in value.items() if k not in _IGNORED_KEYS}
            if isinstance(value, list):
                return [canonical(v) for v in value]
            return value

        return json.dumps(canonical(expression), sort_keys=True)


# -- tree helpers ---------------------------------------------------------------------------------


def _map_children(expression: dict[str, Any], function: Any) -> dict[str, Any]:
    """A copy of `expression` with each direct sub-expression replaced by `function(child)`."""

    def visit(value: Any) -> Any:
        if isinstance(value, dict):
            if "class" in value:
                return function(value)
            return {key: visit(item) for key, item in value.items()}
        if isinstance(value, list):
            return [visit(item) for item in value]
        return value

    return {key: (value if key == "type_expr" else visit(value)) for key, value in expression.items()}


def _fill(value: Any, slots: dict[str, dict[str, Any]]) -> Any:
    """The template tree with every `__vitamin_slot_<name>` column (and table) replaced by its slot's tree."""
    if isinstance(value, dict):
        if value.get("class") == "COLUMN_REF" and len(value["column_names"]) == 1:
            name = str(value["column_names"][0])
            if name.startswith(_SLOT):
                filled = copy.deepcopy(slots[name.removeprefix(_SLOT)])
                filled["alias"] = value.get("alias", "")
                return filled
        return {key: _fill(item, slots) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, slots) for item in value]
    return value


def _try(expression: dict[str, Any]) -> dict[str, Any]:
    """`TRY(expression)`; a bare column or constant, which cannot raise, as it is (measured: TRY
    around the plain grouping columns of bench_query_engine's aggregate made it 2.3x slower)."""
    if expression.get("class") in ("COLUMN_REF", "CONSTANT"):
        return _without_alias(expression)
    return {"class": "OPERATOR", "type": "OPERATOR_TRY", "alias": "", "children": [_without_alias(expression)]}


def _without_alias(expression: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(expression)
    copied["alias"] = ""
    return copied


def _positional(expression: dict[str, Any]) -> int | None:
    literal = expression.get("literal") if expression.get("class") == "CONSTANT" else None
    if literal and literal.get("kind") in ("INTEGER", "BIGINT"):
        try:
            return int(literal["text"])
        except (TypeError, ValueError):
            return None
    return None


def _contains_aggregate(expression: Any) -> bool:
    if isinstance(expression, dict):
        if expression.get("class") == "FUNCTION" and str(expression["function_name"]).lower() in AGGREGATE_FUNCTIONS:
            return True
        return any(_contains_aggregate(value) for value in expression.values())
    if isinstance(expression, list):
        return any(_contains_aggregate(value) for value in expression)
    return False
