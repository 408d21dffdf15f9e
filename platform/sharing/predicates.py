"""Partition pruning from a query's `jsonPredicateHints` (the protocol's JSON predicate language).

Hints are best effort by the protocol's rules: the client filters the rows itself, so a server
may return more files than match, never fewer. A file is dropped only when its partition values
make the predicate certainly false; anything not understood (an unknown op, a column that is
not a partition column, a value that does not parse) keeps the file.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

_UNKNOWN = None  # three-valued: True, False, or unknown
_COMPARISONS = {
    "equal": lambda a, b: a == b,
    "lessThan": lambda a, b: a < b,
    "lessThanOrEqual": lambda a, b: a <= b,
    "greaterThan": lambda a, b: a > b,
    "greaterThanOrEqual": lambda a, b: a >= b,
}
_PARSERS = {
    "int": int,
    "long": int,
    "string": str,
    "date": dt.date.fromisoformat,
    "boolean": lambda text: {"true": True, "false": False}[str(text).lower()],
}


def parse(hints: str | None) -> dict | None:
    """The predicate tree, or None when there is none or it is not JSON (then nothing is pruned)."""
    if not hints:
        return None
    try:
        tree = json.loads(hints)
    except ValueError:
        return None
    return tree if isinstance(tree, dict) else None


def may_match(tree: dict | None, partition_values: dict[str, str]) -> bool:
    """False only when the file's partition values make `tree` false."""
    return tree is None or _evaluate(tree, partition_values) is not False


def _evaluate(node: Any, values: dict[str, str]) -> bool | None:
    if not isinstance(node, dict):
        return _UNKNOWN
    op, children = node.get("op"), node.get("children") or []
    if op == "and":
        results = [_evaluate(child, values) for child in children]
        return False if False in results else (True if results and all(results) else _UNKNOWN)
    if op == "or":
        results = [_evaluate(child, values) for child in children]
        return True if True in results else (False if results and all(r is False for r in results) else _UNKNOWN)
    if op == "not" and len(children) == 1:
        result = _evaluate(children[0], values)
        return _UNKNOWN if result is None else not result
    if op == "isNull" and len(children) == 1:
        column = children[0]
        if isinstance(column, dict) and column.get("op") == "column" and column.get("name") in values:
            return values[column["name"]] in ("", "__HIVE_DEFAULT_PARTITION__")
        return _UNKNOWN
    if op in _COMPARISONS and len(children) == 2:
        left, right = (_value(child, values) for child in children)
        if left is None or right is None:
            return _UNKNOWN
        try:
            return _COMPARISONS[op](left, right)
        except TypeError:
            return _UNKNOWN
    return _UNKNOWN


def _value(node: Any, values: dict[str, str]) -> Any:
    if not isinstance(node, dict) or node.get("valueType") not in _PARSERS:
        return None
    parser = _PARSERS[node["valueType"]]
    if node.get("op") == "column":
        raw = values.get(node.get("name"))
    elif node.get("op") == "literal":
        raw = node.get("value")
    else:
        return None
    try:
        return None if raw is None else parser(raw)
    except (ValueError, KeyError, TypeError):
        return None
