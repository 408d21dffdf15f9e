"""Generalization rules: how a quasi-identifier (or any column) is coarsened before publication.

Each rule is parsed from a spec's `generalize:` mapping (`parse_rule`, which
reports every bad parameter), knows which column types it can produce, and
renders itself as a DuckDB SQL expression over its input, so the build applies
it to whole columns at once. Rules never run Python per row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from datasets.sql import quote_identifier, sql_literal

# The region rule joins against this table; datasets.anonymize installs it in every connection that needs it.
REGION_TABLE = "vitamin_region_names"

TEXT = frozenset({"string"})
DATE = frozenset({"date"})
NUMERIC = frozenset({"int32", "int64", "float64"})


class RuleError(ValueError):
    """A `generalize:` mapping is invalid; `problems` lists every (parameter, reason)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems))


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Rule:
    """A rule renders in two steps: `prepare(value)` computes what it needs once per row (an age), and `sql(prepared)`
    labels that value, referring to it as often as it likes (a CASE over edges) without recomputing it."""

    kind: ClassVar[str]
    output_types: ClassVar[frozenset[str]]

    def prepare(self, value: str) -> str:
        return value

    @property
    def referenced_columns(self) -> tuple[str, ...]:
        """Source columns the rule reads besides its input (checked against the source before a build)."""
        return ()


@dataclass(frozen=True)
class Bucket(_Rule):
    """Numeric value → the label of its bucket: given `edges` ("<0", "[0,100)", ">=500") or a fixed `width`."""

    kind: ClassVar[str] = "bucket"
    output_types: ClassVar[frozenset[str]] = TEXT
    edges: tuple[float, ...] = ()
    width: float | None = None

    def sql(self, value: str) -> str:
        if self.width is not None:
            lower = f"floor(({value}) / {self.width!r}) * {self.width!r}"
            if float(self.width).is_integer():
                lower_text = f"CAST(CAST({lower} AS BIGINT) AS VARCHAR)"
                upper_text = f"CAST(CAST({lower} + {self.width!r} AS BIGINT) AS VARCHAR)"
            else:
                digits = len(repr(float(self.width)).split(".")[1])
                lower_text = f"CAST(round({lower}, {digits}) AS VARCHAR)"
                upper_text = f"CAST(round({lower} + {self.width!r}, {digits}) AS VARCHAR)"
            return f"CASE WHEN ({value}) IS NULL THEN NULL ELSE '[' || {lower_text} || ',' || {upper_text} || ')' END"
        labels = [f"<{_format_number(self.edges[0])}"]
        labels += [
            f"[{_format_number(lo)},{_format_number(hi)})" for lo, hi in zip(self.edges, self.edges[1:], strict=False)
        ]
        whens = " ".join(
            f"WHEN ({value}) < {edge!r} THEN {sql_literal(label)}"
            for edge, label in zip(self.edges, labels, strict=True)
        )
        top = sql_literal(f">={_format_number(self.edges[-1])}")
        return f"CASE WHEN ({value}) IS NULL THEN NULL {whens} ELSE {top} END"

    def describe(self) -> str:
        return f"bucket width {self.width:g}" if self.width is not None else f"bucket edges {list(self.edges)}"


@dataclass(frozen=True)
class Truncate(_Rule):
    """Date or timestamp → the first day of its year, quarter, month, ISO week (Monday) or day, as a date."""

    kind: ClassVar[str] = "truncate"
    output_types: ClassVar[frozenset[str]] = DATE
    UNITS: ClassVar[tuple[str, ...]] = ("year", "quarter", "month", "week", "day")
    unit: str

    def prepare(self, value: str) -> str:
        # A timestamp with time zone becomes its date in the session time zone (the spec's). Truncating a date is
        # 2x cheaper than truncating a timestamp, and an age band at the same column shares this cast.
        return f"CAST({value} AS DATE)"

    def sql(self, value: str) -> str:
        return f"CAST(date_trunc({sql_literal(self.unit)}, {value}) AS DATE)"

    def describe(self) -> str:
        return f"truncate to {self.unit}"


@dataclass(frozen=True)
class AgeBand(_Rule):
    """Birth date → age band in whole years at a reference date: width bands ("30-39") or edges ("<18", "18-24", "65+")."""

    kind: ClassVar[str] = "age_band"
    output_types: ClassVar[frozenset[str]] = TEXT
    width: int | None = None
    edges: tuple[int, ...] = ()
    reference_date: dt.date | None = None
    reference_column: str | None = None

    def prepare(self, value: str) -> str:
        """Whole years at the reference: the difference of years, minus one if the birthday has not come yet."""
        if self.reference_date is not None:
            reference = f"DATE {sql_literal(self.reference_date.isoformat())}"
        else:
            reference = f"CAST({quote_identifier(self.reference_column)} AS DATE)"
        born = f"CAST({value} AS DATE)"
        return (
            f"year({reference}) - year({born})"
            f" - CAST(month({reference}) * 100 + day({reference}) < month({born}) * 100 + day({born}) AS INTEGER)"
        )

    def sql(self, value: str) -> str:
        if self.width is not None:
            lower = f"({value} // {self.width}) * {self.width}"
            band = f"CAST({lower} AS VARCHAR) || '-' || CAST({lower} + {self.width - 1} AS VARCHAR)"
            return f"CASE WHEN {value} < 0 THEN NULL ELSE {band} END"
        labels = [f"<{self.edges[0]}"] + [f"{lo}-{hi - 1}" for lo, hi in zip(self.edges, self.edges[1:], strict=False)]
        whens = " ".join(
            f"WHEN {value} < {edge} THEN {sql_literal(label)}" for edge, label in zip(self.edges, labels, strict=True)
        )
        return (
            f"CASE WHEN {value} IS NULL OR {value} < 0 THEN NULL {whens} ELSE {sql_literal(f'{self.edges[-1]}+')} END"
        )

    @property
    def referenced_columns(self) -> tuple[str, ...]:
        return (self.reference_column,) if self.reference_column else ()

    def describe(self) -> str:
        bands = f"width {self.width}" if self.width is not None else f"edges {list(self.edges)}"
        at = self.reference_date.isoformat() if self.reference_date else f"column {self.reference_column}"
        return f"age band ({bands}) at {at}"


@dataclass(frozen=True)
class Region(_Rule):
    """City or province name → its province's official name or its region (华北...西北); unknown places → NULL."""

    kind: ClassVar[str] = "region"
    output_types: ClassVar[frozenset[str]] = TEXT
    LEVELS: ClassVar[tuple[str, ...]] = ("province", "region")
    level: str

    def prepare(self, value: str) -> str:
        return f"trim(CAST({value} AS VARCHAR))"

    def sql(self, value: str) -> str:
        # A correlated scalar subquery: DuckDB turns it into a hash join, several times faster than a MAP literal.
        # Correlated on the prepared column itself, not an expression of it: DuckDB then joins the rows directly
        # instead of first buffering every row of the input to join back (a delim join, memory growing with rows).
        return f"(SELECT {quote_identifier(self.level)} FROM {REGION_TABLE} WHERE name = {value})"

    def describe(self) -> str:
        return f"coarsen place to {self.level}"


@dataclass(frozen=True)
class TopBottom(_Rule):
    """Numeric value clamped into [bottom, top]: the rare extreme values that single people out are coded to the limits."""

    kind: ClassVar[str] = "top_bottom"
    output_types: ClassVar[frozenset[str]] = NUMERIC
    bottom: float | None = None
    top: float | None = None

    def sql(self, value: str) -> str:
        if self.bottom is not None:
            value = f"greatest({value}, {self.bottom!r})"
        if self.top is not None:
            value = f"least({value}, {self.top!r})"
        return value

    def describe(self) -> str:
        return f"top/bottom coding to [{self.bottom}, {self.top}]"


@dataclass(frozen=True)
class Round(_Rule):
    """Numeric value rounded to `digits` decimal places (negative: tens, hundreds) or to a multiple of `step`."""

    kind: ClassVar[str] = "round"
    output_types: ClassVar[frozenset[str]] = NUMERIC
    digits: int | None = None
    step: float | None = None

    def sql(self, value: str) -> str:
        if self.step is not None:
            return f"round(({value}) / {self.step!r}) * {self.step!r}"
        return f"round({value}, {self.digits})"

    def describe(self) -> str:
        return f"round to step {self.step:g}" if self.step is not None else f"round to {self.digits} digits"


@dataclass(frozen=True)
class Keep(_Rule):
    """The value as it is: the spec author's explicit statement that a quasi-identifier is coarse already (gender)."""

    kind: ClassVar[str] = "keep"
    output_types: ClassVar[frozenset[str]] = frozenset({"string", "int32", "int64", "float64", "boolean", "date"})

    def sql(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return "kept as is (coarse already)"


Rule = Bucket | Truncate | AgeBand | Region | TopBottom | Round | Keep


def parse_rule(raw: Any) -> Rule:
    """A validated rule from a spec's `generalize:` mapping (`rule: <kind>` plus its parameters)."""
    if not isinstance(raw, Mapping):
        raise RuleError([("", "must be a mapping with a `rule` field")])
    kind = raw.get("rule")
    if kind not in _PARSERS:
        raise RuleError([("rule", f"unknown rule {kind!r}; one of {', '.join(_PARSERS)}")])
    params = {key: value for key, value in raw.items() if key != "rule"}
    return _PARSERS[kind](_Params(params))


class _Params:
    """The parameters of one rule; records a problem for each bad or unknown one."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.read: set[str] = set()
        self.problems: list[tuple[str, str]] = []

    def get(self, name: str) -> Any:
        self.read.add(name)
        return self.params.get(name)

    def number(self, name: str, *, positive: bool = False) -> float | None:
        value = self.get(name)
        if value is None:
            return None
        if not _is_number(value) or (positive and value <= 0):
            self.problems.append((name, "must be a positive number" if positive else "must be a number"))
            return None
        return value

    def integer(self, name: str, *, minimum: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
            self.problems.append((name, "must be an integer" + (f" >= {minimum}" if minimum is not None else "")))
            return None
        return value

    def edges(self, name: str, *, integers: bool = False) -> tuple:
        value = self.get(name)
        if value is None:
            return ()
        kind = "integers" if integers else "numbers"
        valid = (
            isinstance(value, list)
            and value
            and all(_is_number(v) and (not integers or isinstance(v, int)) for v in value)
        )
        if not valid or any(lo >= hi for lo, hi in zip(value, value[1:], strict=False)):
            self.problems.append((name, f"must be a non-empty list of strictly increasing {kind}"))
            return ()
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.get(name)
        if value not in choices:
            self.problems.append((name, f"must be one of {', '.join(choices)}"))
            return None
        return value

    def exactly_one(self, *names: str) -> None:
        given = [name for name in names if self.params.get(name) is not None]
        if len(given) != 1:
            self.problems.append((names[0], f"give exactly one of {', '.join(names)}"))

    def finish(self, rule: Rule) -> Rule:
        for unknown in sorted(set(self.params) - self.read):
            self.problems.append((unknown, "unknown parameter"))
        if self.problems:
            raise RuleError(self.problems)
        return rule


def _parse_keep(p: _Params) -> Rule:
    return p.finish(Keep())


def _parse_bucket(p: _Params) -> Rule:
    p.exactly_one("edges", "width")
    return p.finish(Bucket(edges=p.edges("edges"), width=p.number("width", positive=True)))


def _parse_truncate(p: _Params) -> Rule:
    return p.finish(Truncate(unit=p.choice("unit", Truncate.UNITS)))


def _parse_age_band(p: _Params) -> Rule:
    if p.params.get("edges") is not None and p.params.get("width") is not None:
        p.problems.append(("edges", "give edges or width, not both"))
    p.exactly_one("reference_date", "reference_column")
    reference_date = p.get("reference_date")
    if isinstance(reference_date, str):
        try:
            reference_date = dt.date.fromisoformat(reference_date)
        except ValueError:
            reference_date = None
            p.problems.append(("reference_date", "must be a date (YYYY-MM-DD)"))
    elif reference_date is not None and not isinstance(reference_date, dt.date):
        reference_date = None
        p.problems.append(("reference_date", "must be a date (YYYY-MM-DD)"))
    reference_column = p.get("reference_column")
    if reference_column is not None and not isinstance(reference_column, str):
        reference_column = None
        p.problems.append(("reference_column", "must be a column name"))
    edges = p.edges("edges", integers=True)
    width = p.integer("width", minimum=1)
    if not edges and width is None:
        width = 10
    return p.finish(AgeBand(width=width, edges=edges, reference_date=reference_date, reference_column=reference_column))


def _parse_region(p: _Params) -> Rule:
    return p.finish(Region(level=p.choice("level", Region.LEVELS)))


def _parse_top_bottom(p: _Params) -> Rule:
    bottom, top = p.number("bottom"), p.number("top")
    if bottom is None and top is None:
        p.problems.append(("top", "give top, bottom or both"))
    elif bottom is not None and top is not None and bottom >= top:
        p.problems.append(("top", "must be greater than bottom"))
    return p.finish(TopBottom(bottom=bottom, top=top))


def _parse_round(p: _Params) -> Rule:
    p.exactly_one("digits", "step")
    return p.finish(Round(digits=p.integer("digits"), step=p.number("step", positive=True)))


_PARSERS = {
    "bucket": _parse_bucket,
    "truncate": _parse_truncate,
    "age_band": _parse_age_band,
    "region": _parse_region,
    "top_bottom": _parse_top_bottom,
    "round": _parse_round,
    "keep": _parse_keep,
}
