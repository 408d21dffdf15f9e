"""The limits a partner's use runs under: one type for every path (SQL, jobs, downloads, lookups).

A `Limits` is a plan's values with a subscription's overrides applied (the
platform builds it from its models); a query that reads several subscriptions
runs under `Limits.tightest` of theirs. Three kinds of limit, all whole numbers:

- per day, counted by the quota service (`DAILY_METRICS` maps each metric to its limit);
- concurrency: `concurrent_queries`, held as quota leases;
- per query: `max_query_seconds` and `max_result_rows`, applied by the SQL gateway itself.

The defaults are a new plan's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace

# Metric name (as the quota service and the usage API know it) → the Limits field that caps it per day.
DAILY_METRICS: dict[str, str] = {
    "queries": "queries_per_day",
    "rows_returned": "rows_returned_per_day",
    "bytes_scanned": "bytes_scanned_per_day",
    "bytes_downloaded": "bytes_downloaded_per_day",
    "lookups": "lookups_per_day",
    "cohort_customers": "cohort_customers_per_day",
}
CONCURRENT_QUERIES = "concurrent_queries"
# Daily metrics known only when the work is done (rows sent, bytes read): counted after it, never refused midway,
# so the use that crosses the limit completes and the next is refused. Every other daily metric is charged before
# the work and refused whole when it would pass its limit. The query service checks these at 0 before a query.
CHARGED_AFTER_USE: frozenset[str] = frozenset({"rows_returned", "bytes_scanned"})


@dataclass(frozen=True)
class Limits:
    queries_per_day: int = 1000
    rows_returned_per_day: int = 10_000_000
    bytes_scanned_per_day: int = 50 * 1024**3
    bytes_downloaded_per_day: int = 10 * 1024**3
    lookups_per_day: int = 10_000
    cohort_customers_per_day: int = 1_000_000
    concurrent_queries: int = 2
    max_query_seconds: float = 60
    max_result_rows: int = 1_000_000

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"The limit {item.name} must be a non-negative number, not {value!r}.")

    @classmethod
    def tightest(cls, many: Iterable[Limits]) -> Limits:
        """Each limit at its lowest among `many`: what a use of several subscriptions at once runs under."""
        many = list(many)
        if not many:
            raise ValueError("tightest() needs at least one Limits")
        return cls(**{name: min(getattr(each, name) for each in many) for name in LIMIT_NAMES})

    def daily_limit(self, metric: str) -> int:
        """The per-day limit on a metric of DAILY_METRICS."""
        if metric not in DAILY_METRICS:
            raise ValueError(f"{metric!r} is not a daily metric; known: {', '.join(DAILY_METRICS)}")
        return getattr(self, DAILY_METRICS[metric])

    def with_overrides(self, overrides: dict[str, int]) -> Limits:
        return replace(self, **clean_overrides(overrides))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


LIMIT_NAMES: tuple[str, ...] = tuple(field.name for field in fields(Limits))
DEFAULT_LIMITS = Limits()


def clean_overrides(value) -> dict[str, int]:
    """Validate per-subscription overrides: {limit name: non-negative integer}; raises ValueError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("Limit overrides must be an object of limit name → number.")
    unknown = sorted(set(value) - set(LIMIT_NAMES))
    if unknown:
        raise ValueError(f"Unknown limit(s): {', '.join(unknown)}. Known: {', '.join(LIMIT_NAMES)}.")
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"The limit {name} must be a non-negative whole number, not {number!r}.")
    return dict(value)
