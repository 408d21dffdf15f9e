"""Cohort summaries: aggregate features of matched customers per group, with the k rule.

    groups = summarize(rows, entity="customer", group_by=["age_band", Band("credit_score", 50)],
                       measures=["credit_score"], k=5, cutoff=("credit_score", 600))

Each customer counts once, however often the submitted list named them. A group of fewer
than k distinct customers is left out of the answer entirely: no row, no count, no flag, and
no total from which its size could be worked out (the caller reports only what this returns).
The statistics are fixed (count, mean, quartiles, share at or above a cut-off): no
expression of the partner's is ever evaluated, so no error can depend on a small group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from datasets.generalize import Bucket
from datasets.sql import quote_identifier

_TABLE = "cohort_rows"
QUARTILES = (("p25", 0.25), ("median", 0.5), ("p75", 0.75))


@dataclass(frozen=True)
class Band:
    """Group by bands of a numeric field: [0, width), [width, 2 * width), ..."""

    field: str
    width: float

    def __post_init__(self) -> None:
        if not (isinstance(self.width, int | float) and math.isfinite(self.width) and self.width > 0):
            raise ValueError("a band width is a positive number")

    @property
    def name(self) -> str:
        return f"{self.field}_band"


GroupBy = str | Band


def summarize(
    rows: pa.Table,
    *,
    entity: str,
    group_by: Sequence[GroupBy],
    measures: Sequence[str],
    k: int,
    cutoff: tuple[str, float] | None = None,
) -> list[dict]:
    """One entry per group of at least `k` distinct `entity` values, in group order:
    {"group": {name: value}, "customers": n, "measures": {m: {mean, p25, median, p75}}, "share_at_or_above": s}."""
    if k < 1:
        raise ValueError("k must be at least 1")
    keys, names = [], []
    for item in group_by:
        if isinstance(item, Band):
            keys.append(Bucket(width=item.width).sql(quote_identifier(item.field)))
            names.append(item.name)
        else:
            keys.append(quote_identifier(item))
            names.append(item)
    selects = [f"{key} AS {quote_identifier(f'g{index}')}" for index, key in enumerate(keys)]
    selects.append("count(*) AS customers")
    for index, measure in enumerate(measures):
        column = quote_identifier(measure)
        selects.append(f"avg({column}) AS m{index}_mean")
        selects += [f"quantile_cont({column}, {q}) AS m{index}_{label}" for label, q in QUARTILES]
    parameters = []
    if cutoff is not None:
        field, value = cutoff
        column = quote_identifier(field)
        selects.append(f"avg(CASE WHEN {column} >= ? THEN 1.0 WHEN {column} IS NOT NULL THEN 0.0 END) AS share")
        parameters.append(value)
    group_clause = f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    order_clause = f"ORDER BY {', '.join(f'{i + 1} NULLS LAST' for i in range(len(keys)))}" if keys else ""
    # One row per customer (the first of their rows: every row of a customer is the same row of the version).
    unique = f"(SELECT * FROM {_TABLE} QUALIFY row_number() OVER (PARTITION BY {quote_identifier(entity)}) = 1)"
    sql = f"SELECT {', '.join(selects)} FROM {unique} {group_clause} HAVING count(*) >= {int(k)} {order_clause}"
    with duckdb.connect(":memory:", config={"threads": 1, "enable_external_access": False}) as con:
        con.register(_TABLE, rows)
        result = con.execute(sql, parameters).fetchall()
        columns = [description[0] for description in con.description]
    groups = []
    for row in result:
        values = dict(zip(columns, row, strict=True))
        entry = {
            "group": {name: values[f"g{index}"] for index, name in enumerate(names)},
            "customers": values["customers"],
            "measures": {
                measure: {
                    "mean": _round(values[f"m{index}_mean"]),
                    **{label: _round(values[f"m{index}_{label}"]) for label, _ in QUARTILES},
                }
                for index, measure in enumerate(measures)
            },
        }
        if cutoff is not None:
            entry["share_at_or_above"] = _round(values["share"])
        groups.append(entry)
    return groups


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
