"""Aggregate-tier analysis rules: check a statement that reads an aggregate dataset, then add the k threshold.

Modelled on AWS Clean Rooms aggregation analysis rules and Snowflake
aggregation policies, kept deliberately strict so the check stays simple
enough to trust:

- One plain SELECT: no WITH, subqueries, set operations, window functions,
  QUALIFY, SAMPLE, grouping sets, lambdas or `*`.
- FROM: datasets joined with JOIN ... ON/USING equalities; a column of an
  aggregate dataset in a join must be one of its declared join keys.
- Aggregates: COUNT(*), COUNT(col), COUNT(DISTINCT col), SUM, AVG, MIN, MAX,
  as the dataset's spec allows (`analysis.aggregates`). The argument is a bare
  column, never an expression (so no CASE can smuggle a filter in), no FILTER,
  no ORDER BY. SUM/AVG/MIN/MAX take measures; COUNT takes dimensions and
  measures; COUNT(DISTINCT) also takes the entity column.
- Outside aggregates (SELECT, WHERE, GROUP BY, HAVING, ORDER BY) only dimension
  columns appear. The entity and identifier columns appear nowhere else, under
  any alias, expression or column renaming.
- Columns of open datasets joined in are unrestricted (they are public to the
  partner anyway); the threshold still counts the aggregate dataset's entities.

A group is then released only when at least k distinct entities of each
aggregate dataset in FROM contributed to it after WHERE and the joins; distinct
is what makes padding a group with many rows of one entity, or fanning one
entity out through a join, useless. `aggregate_plan` builds the statements that
apply this before any partner expression sees a group: dropped groups leave no
trace, not even an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasets.query import aggregate_plan
from datasets.query.aggregate_plan import AggregatePlan, Parser
from datasets.query.bindings import IDENTIFYING_ROLES, DatasetBinding, Tier
from datasets.query.checker import position_of
from datasets.query.errors import Code, QueryRejected
from datasets.query.functions import AGGREGATE_FUNCTIONS

# SQL aggregate → the name the dataset spec uses in `analysis.aggregates`.
_SPEC_AGGREGATES = {
    "count_star": "count",
    "count": "count",
    "sum": "sum",
    "avg": "avg",
    "mean": "avg",
    "min": "min",
    "max": "max",
}
_MEASURE_ONLY = frozenset({"sum", "avg", "min", "max"})
_SIMPLE_EXPRESSIONS = frozenset(
    {"CONSTANT", "CAST", "COMPARISON", "CONJUNCTION", "OPERATOR", "BETWEEN", "CASE", "COLLATE", "TYPE"}
)
_JOIN_TYPES = frozenset({"INNER", "LEFT", "RIGHT", "OUTER"})


@dataclass(frozen=True)
class _Source:
    """A dataset in FROM, under the name SQL refers to it by (its alias, else its slug)."""

    name: str
    binding: DatasetBinding

    @property
    def is_aggregate(self) -> bool:
        return self.binding.tier is Tier.AGGREGATE


@dataclass(frozen=True)
class _Context:
    """Where an expression stands: which clause, and whether aggregates and select-list aliases may appear."""

    clause: str
    aggregates: bool
    aliases: bool


_SELECT = _Context("SELECT", aggregates=True, aliases=False)
_WHERE = _Context("WHERE", aggregates=False, aliases=True)
_GROUP_BY = _Context("GROUP BY", aggregates=False, aliases=True)
_HAVING = _Context("HAVING", aggregates=True, aliases=True)
_ORDER_BY = _Context("ORDER BY", aggregates=True, aliases=True)


def reads_aggregate_dataset(table_names: set[str], bindings: Mapping[str, DatasetBinding]) -> bool:
    by_name = {slug.lower(): binding for slug, binding in bindings.items()}
    return any(by_name[name].tier is Tier.AGGREGATE for name in table_names if name in by_name)


def enforce(statement: dict[str, Any], bindings: Mapping[str, DatasetBinding], parser: Parser) -> AggregatePlan:
    """Check the aggregate rules; return the plan that releases only groups of at least k entities."""
    node = statement["node"]
    if node.get("type") != "SELECT_NODE":
        raise QueryRejected(
            Code.SUBQUERY_NOT_ALLOWED,
            "Queries over aggregate datasets must be a single SELECT (no UNION or WITH RECURSIVE).",
        )
    if node.get("cte_map", {}).get("map"):
        raise QueryRejected(Code.SUBQUERY_NOT_ALLOWED, "Queries over aggregate datasets cannot use WITH.")
    by_name = {slug.lower(): binding for slug, binding in bindings.items()}
    check = AggregateQuery(node, by_name)
    check.run()
    return aggregate_plan.plan(statement, check, parser)


class AggregateQuery:
    def __init__(self, node: dict[str, Any], bindings: Mapping[str, DatasetBinding]):
        self.node = node
        self.bindings = bindings
        self.sources: list[_Source] = []
        self.aliases: set[str] = set()
        self.has_aggregate = False
        # Columns a join compares, as ((slug, column), (slug, column)): their types must match.
        self.join_keys: list[tuple[tuple[str, str], tuple[str, str]]] = []

    def run(self) -> None:
        node = self.node
        self._collect_sources(node["from_table"])
        if node.get("qualify") is not None:
            raise QueryRejected(Code.WINDOW_FUNCTION_NOT_ALLOWED, "QUALIFY is not allowed on aggregate datasets.")
        if node.get("sample") is not None:
            raise QueryRejected(Code.SAMPLE_NOT_ALLOWED, "SAMPLE is not allowed on aggregate datasets.")
        handling = node.get("aggregate_handling")
        if handling not in ("STANDARD_HANDLING", "FORCE_AGGREGATES"):
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, "This form of GROUP BY is not supported.")
        groups = node.get("group_expressions") or []
        sets = node.get("group_sets") or []
        if len(sets) > 1 or (sets and sorted(sets[0]) != list(range(len(groups)))):
            raise QueryRejected(
                Code.GROUPING_SETS_NOT_ALLOWED, "GROUPING SETS, ROLLUP and CUBE are not allowed on aggregate datasets."
            )

        for item in node["select_list"]:
            self._check(item, _SELECT)
            if item.get("alias"):
                self.aliases.add(str(item["alias"]).lower())
        if node.get("where_clause") is not None:
            self._check(node["where_clause"], _WHERE)
        for expression in groups:
            self._check(expression, _GROUP_BY)
        if node.get("having") is not None:
            self._check(node["having"], _HAVING)
        for modifier in node.get("modifiers", []):
            self._check_modifier(modifier)
        if not (groups or handling == "FORCE_AGGREGATES" or self.has_aggregate):
            raise QueryRejected(
                Code.AGGREGATE_QUERY_REQUIRED,
                "Aggregate datasets answer aggregate queries only: use COUNT, SUM, AVG ... with GROUP BY on dimensions.",
            )

    # -- FROM -------------------------------------------------------------------------------------

    def _collect_sources(self, ref: dict[str, Any]) -> None:
        kind = ref.get("type")
        if kind == "BASE_TABLE":
            slug = str(ref["table_name"]).lower()
            binding = self.bindings[slug]
            if ref.get("column_name_alias"):
                raise QueryRejected(
                    Code.COLUMN_ALIAS_NOT_ALLOWED,
                    "Renaming a dataset's columns in FROM (AS t(a, b, ...)) is not allowed in aggregate queries.",
                    position_of(ref),
                )
            if ref.get("sample") is not None:
                raise QueryRejected(
                    Code.SAMPLE_NOT_ALLOWED, "SAMPLE is not allowed on aggregate datasets.", position_of(ref)
                )
            name = str(ref.get("alias") or slug).lower()
            self.sources.append(_Source(name, binding))
        elif kind == "JOIN":
            self._collect_sources(ref["left"])
            self._collect_sources(ref["right"])
            self._check_join(ref)
        else:
            raise QueryRejected(
                Code.SUBQUERY_NOT_ALLOWED,
                "Queries over aggregate datasets read datasets directly: no subqueries or VALUES in FROM.",
                position_of(ref),
            )

    def _check_join(self, join: dict[str, Any]) -> None:
        keyed = join.get("ref_type") == "REGULAR" and join.get("join_type") in _JOIN_TYPES
        if not keyed or (join.get("condition") is None and not join.get("using_columns")):
            raise QueryRejected(
                Code.JOIN_NOT_ON_DECLARED_KEYS,
                "Join aggregate datasets with JOIN ... ON a.key = b.key (or USING) on their declared join keys.",
                position_of(join),
            )
        for name in join.get("using_columns") or []:
            sides = []
            for source in self.sources:
                if source.binding.has_column(name):
                    self._require_join_key(source, name, join)
                    sides.append((source.binding.slug, name))
            self.join_keys += list(itertools.pairwise(sides))
        if join.get("condition") is not None:
            for left, right in self._equalities(join["condition"]):
                sides = []
                for column in (left, right):
                    for source, name in self.resolve(column):
                        self._require_join_key(source, name, column)
                        sides.append((source.binding.slug, name))
                self.join_keys += list(itertools.pairwise(sides))

    def _equalities(self, condition: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        if condition.get("class") == "CONJUNCTION" and condition.get("type") == "CONJUNCTION_AND":
            return [pair for child in condition["children"] for pair in self._equalities(child)]
        is_equality = condition.get("class") == "COMPARISON" and condition.get("type") == "COMPARE_EQUAL"
        if is_equality and all(condition[side].get("class") == "COLUMN_REF" for side in ("left", "right")):
            return [(condition["left"], condition["right"])]
        raise QueryRejected(
            Code.JOIN_NOT_ON_DECLARED_KEYS,
            "Join conditions must be equalities between key columns, joined with AND.",
            position_of(condition),
        )

    def _require_join_key(self, source: _Source, column: str, where: dict[str, Any]) -> None:
        if source.is_aggregate and column.lower() not in {k.lower() for k in source.binding.analysis.join_keys}:
            raise QueryRejected(
                Code.JOIN_NOT_ON_DECLARED_KEYS,
                f'"{column}" is not a declared join key of the dataset "{source.binding.slug}".',
                position_of(where),
            )

    # -- expressions ------------------------------------------------------------------------------

    def _check(self, expression: dict[str, Any], context: _Context) -> None:
        kind = expression.get("class")
        if kind == "COLUMN_REF":
            self._check_column_outside_aggregate(expression, context)
        elif kind == "FUNCTION" and str(expression["function_name"]).lower() in AGGREGATE_FUNCTIONS:
            self._check_aggregate(expression, context)
        elif kind == "FUNCTION":
            for child in _child_expressions(expression):
                self._check(child, context)
        elif kind == "WINDOW":
            raise QueryRejected(
                Code.WINDOW_FUNCTION_NOT_ALLOWED,
                "Window functions are not allowed on aggregate datasets.",
                position_of(expression),
            )
        elif kind == "SUBQUERY":
            raise QueryRejected(
                Code.SUBQUERY_NOT_ALLOWED, "Subqueries are not allowed on aggregate datasets.", position_of(expression)
            )
        elif kind == "STAR":
            raise QueryRejected(
                Code.COLUMN_NOT_A_DIMENSION,
                "* and COLUMNS(...) are not allowed on aggregate datasets; name dimension columns and aggregates.",
                position_of(expression),
            )
        elif kind in _SIMPLE_EXPRESSIONS:
            for child in _child_expressions(expression):
                self._check(child, context)
        else:
            # POSITIONAL_REFERENCE (#1 means a FROM column in SELECT), LAMBDA, and anything new.
            raise QueryRejected(
                Code.UNSUPPORTED_SYNTAX,
                "This expression is not supported in aggregate queries.",
                position_of(expression),
            )

    def _check_column_outside_aggregate(self, column: dict[str, Any], context: _Context) -> None:
        names = column["column_names"]
        is_alias = context.aliases and len(names) == 1 and str(names[0]).lower() in self.aliases
        interpretations = self.resolve(column, allow_unknown=is_alias)
        for source, name in interpretations:
            role = source.binding.role(name)
            if not source.is_aggregate:
                continue
            if role in IDENTIFYING_ROLES:
                raise QueryRejected(
                    Code.ENTITY_COLUMN_NOT_ALLOWED,
                    f'The column "{name}" identifies people and can only be counted: COUNT(DISTINCT {name}).',
                    position_of(column),
                )
            dimensions = {d.lower() for d in source.binding.analysis.dimensions}
            if name.lower() not in dimensions:
                raise QueryRejected(
                    Code.COLUMN_NOT_A_DIMENSION,
                    f'In {context.clause}, "{name}" may only appear inside an aggregate; '
                    f"dimensions of {source.binding.slug}: {', '.join(source.binding.analysis.dimensions)}.",
                    position_of(column),
                )

    def _check_aggregate(self, call: dict[str, Any], context: _Context) -> None:
        name = str(call["function_name"]).lower()
        where = position_of(call)
        if not context.aggregates:
            raise QueryRejected(
                Code.AGGREGATE_FUNCTION_NOT_ALLOWED, f"Aggregates are not allowed in {context.clause}.", where
            )
        spec_name = _SPEC_AGGREGATES.get(name)
        if spec_name is None:
            raise QueryRejected(
                Code.AGGREGATE_FUNCTION_NOT_ALLOWED,
                f'The aggregate "{name}" is not allowed on aggregate datasets (COUNT, SUM, AVG, MIN, MAX as the dataset allows).',
                where,
            )
        if call.get("filter") is not None or (call.get("order_bys") or {}).get("orders"):
            raise QueryRejected(
                Code.AGGREGATE_ARGUMENT_NOT_ALLOWED, "FILTER and ORDER BY inside aggregates are not allowed.", where
            )
        distinct = bool(call.get("distinct"))
        if distinct and spec_name != "count":
            raise QueryRejected(Code.AGGREGATE_ARGUMENT_NOT_ALLOWED, "DISTINCT is allowed in COUNT only.", where)
        if distinct:
            spec_name = "count_distinct"
        self.has_aggregate = True
        arguments = call.get("arguments") or []
        if name == "count_star":
            self._require_aggregate_allowed("count", (s for s in self.sources if s.is_aggregate), where)
            return
        bare_column = (
            len(arguments) == 1
            and not arguments[0].get("name")
            and arguments[0]["expression"].get("class") == "COLUMN_REF"
        )
        if not bare_column:
            raise QueryRejected(
                Code.AGGREGATE_ARGUMENT_NOT_ALLOWED,
                f"{name.upper()} takes a single column here, not an expression (use COUNT(*) to count rows).",
                where,
            )
        column = arguments[0]["expression"]
        for source, column_name in self.resolve(column):
            if source.is_aggregate:
                self._require_aggregate_allowed(spec_name, [source], where)
                self._require_aggregate_column(source, spec_name, column_name, position_of(column))

    def _require_aggregate_allowed(self, spec_name: str, sources: Any, where: int | None) -> None:
        for source in sources:
            if spec_name not in source.binding.analysis.aggregates:
                allowed = ", ".join(source.binding.analysis.aggregates)
                raise QueryRejected(
                    Code.AGGREGATE_FUNCTION_NOT_ALLOWED,
                    f'"{spec_name}" is not allowed on the dataset "{source.binding.slug}" (allowed: {allowed}).',
                    where,
                )

    def _require_aggregate_column(self, source: _Source, spec_name: str, column: str, where: int | None) -> None:
        analysis = source.binding.analysis
        role = source.binding.role(column)
        measures = {m.lower() for m in analysis.measures}
        dimensions = {d.lower() for d in analysis.dimensions}
        lowered = column.lower()
        if spec_name == "count_distinct" and lowered == source.binding.entity.lower():
            return
        if role in IDENTIFYING_ROLES:
            raise QueryRejected(
                Code.ENTITY_COLUMN_NOT_ALLOWED,
                f'The column "{column}" identifies people and can only be counted: COUNT(DISTINCT {column}).'
                if lowered == source.binding.entity.lower()
                else f'The column "{column}" identifies people and is not available in aggregate queries.',
                where,
            )
        allowed = measures if spec_name in _MEASURE_ONLY else measures | dimensions
        if lowered not in allowed:
            raise QueryRejected(
                Code.AGGREGATE_ARGUMENT_NOT_ALLOWED,
                f'{spec_name.upper()}("{column}") is not allowed on the dataset "{source.binding.slug}"; '
                f"measures: {', '.join(analysis.measures) or 'none'}.",
                where,
            )

    def _check_modifier(self, modifier: dict[str, Any]) -> None:
        kind = modifier.get("type")
        if kind == "ORDER_MODIFIER":
            for order in modifier.get("orders", []):
                self._check(order["expression"], _ORDER_BY)
        elif kind == "DISTINCT_MODIFIER":
            for target in modifier.get("distinct_on_targets") or []:
                self._check(target, _ORDER_BY)
        elif kind == "LIMIT_MODIFIER":
            for key in ("limit", "offset"):
                if modifier.get(key) is not None and modifier[key].get("class") != "CONSTANT":
                    raise QueryRejected(
                        Code.UNSUPPORTED_SYNTAX, "LIMIT and OFFSET take numbers.", position_of(modifier[key])
                    )
        else:
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, "This query modifier is not supported in aggregate queries.")

    # -- names ------------------------------------------------------------------------------------

    def resolve(self, column: dict[str, Any], *, allow_unknown: bool = False) -> list[tuple[_Source, str]]:
        """Every (dataset, column) a column reference could mean; each must pass, whichever DuckDB picks.

        `t.c` is column c of the dataset named t, or the struct field c of a
        column t; `c` is column c of any dataset in FROM. A name that is none of
        these is refused, unless it is a select-list alias where aliases may appear.
        """
        names = [str(n) for n in column["column_names"]]
        found: list[tuple[_Source, str]] = []
        if len(names) >= 2:
            found += [
                (s, names[1]) for s in self.sources if s.name == names[0].lower() and s.binding.has_column(names[1])
            ]
        found += [(s, names[0]) for s in self.sources if s.binding.has_column(names[0])]
        if len(names) > 2 or (not found and not allow_unknown):
            raise QueryRejected(Code.UNKNOWN_COLUMN, f'Unknown column "{".".join(names)}".', position_of(column))
        return found


def _child_expressions(expression: dict[str, Any]) -> list[dict[str, Any]]:
    """The direct sub-expressions of a non-function expression node."""
    children: list[dict[str, Any]] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if "class" in value:
                children.append(value)
            else:
                for item in value.values():
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for key, value in expression.items():
        if key != "type_expr":
            collect(value)
    return children
