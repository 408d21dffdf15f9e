"""The limits a subscription runs under: a plan's values with the subscription's overrides applied.

Three kinds of limit, all whole numbers:

- per day, counted by the quota service (`DAILY_METRICS` maps each metric to its limit);
- concurrency: `concurrent_queries`, held as quota leases;
- per query: `max_query_seconds` and `max_result_rows`, applied by the SQL gateway itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

# Metric name (as the quota service and the usage API know it) → the Limits field that caps it per day.
DAILY_METRICS: dict[str, str] = {
    "queries": "queries_per_day",
    "rows_returned": "rows_returned_per_day",
    "bytes_scanned": "bytes_scanned_per_day",
    "bytes_downloaded": "bytes_downloaded_per_day",
    "lookups": "lookups_per_day",
}
CONCURRENT_QUERIES = "concurrent_queries"


@dataclass(frozen=True)
class Limits:
    queries_per_day: int
    rows_returned_per_day: int
    bytes_scanned_per_day: int
    bytes_downloaded_per_day: int
    lookups_per_day: int
    concurrent_queries: int
    max_query_seconds: int
    max_result_rows: int

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
