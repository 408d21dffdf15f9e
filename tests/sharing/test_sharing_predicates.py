"""Partition pruning from jsonPredicateHints: a file is dropped only when its partition values make the predicate false."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sharing.predicates import may_match, parse


def column(name, value_type="date"):
    return {"op": "column", "name": name, "valueType": value_type}


def literal(value, value_type="date"):
    return {"op": "literal", "value": value, "valueType": value_type}


def test_comparisons_and_boolean_logic_prune_by_partition_values():
    january = {"month": "2025-01-01", "region": "east"}
    after_feb = {"op": "greaterThanOrEqual", "children": [column("month"), literal("2025-02-01")]}
    assert not may_match(after_feb, january)
    assert may_match(after_feb, {"month": "2025-03-01"})
    east = {"op": "equal", "children": [column("region", "string"), literal("east", "string")]}
    assert may_match({"op": "and", "children": [east, {"op": "not", "children": [after_feb]}]}, january)
    assert not may_match({"op": "and", "children": [east, after_feb]}, january)
    assert may_match({"op": "or", "children": [east, after_feb]}, january)


def test_what_is_not_understood_keeps_the_file():
    january = {"month": "2025-01-01"}
    assert may_match(parse("not json"), january)
    assert may_match({"op": "someFutureOp", "children": []}, january)
    on_a_data_column = {"op": "equal", "children": [column("amount", "int"), literal("5", "int")]}
    assert may_match(on_a_data_column, january), "not a partition column: the client filters rows itself"
    assert may_match({"op": "equal", "children": [column("month"), literal("not a date")]}, january)


values = st.sampled_from(["2025-01-01", "2025-02-01", "2025-03-01"])
ops = st.sampled_from(["equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"])
leaf = st.builds(lambda op, v: {"op": op, "children": [column("month"), literal(v)]}, ops, values)
trees = st.recursive(
    leaf | st.just({"op": "mystery"}),
    lambda children: st.one_of(
        st.builds(lambda c: {"op": "and", "children": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"op": "or", "children": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"op": "not", "children": [c]}, children),
    ),
    max_leaves=6,
)


def truth(tree, month):
    """The predicate on a row of this month, where a "mystery" is either value: None when it depends."""
    import itertools

    mysteries = json.dumps(tree).count("mystery")
    results = {
        _evaluate_with(tree, month, iter(choice)) for choice in itertools.product([True, False], repeat=mysteries)
    }
    return results.pop() if len(results) == 1 else None


def _evaluate_with(node, month, choices):
    op = node["op"]
    if op == "mystery":
        return next(choices)
    if op == "and":
        return all([_evaluate_with(child, month, choices) for child in node["children"]])
    if op == "or":
        return any([_evaluate_with(child, month, choices) for child in node["children"]])
    if op == "not":
        return not _evaluate_with(node["children"][0], month, choices)
    other = node["children"][1]["value"]
    return {"equal": month == other, "lessThan": month < other, "lessThanOrEqual": month <= other,
            "greaterThan": month > other, "greaterThanOrEqual": month >= other}[op]  # fmt: skip


@given(trees, values)
def test_a_file_whose_rows_could_match_is_never_dropped(tree, month):
    if truth(tree, month) is not False:
        assert may_match(tree, {"month": month})
