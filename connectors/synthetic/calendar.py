"""When things happen: shopping volume by day (weekends, 618, Double 11, Spring Festival) and by hour,
and the mapping from a transaction's row number to its time."""

from __future__ import annotations

import datetime as dt

import numpy as np

from .reference import SPRING_FESTIVALS

DAY_MS = 86_400_000
SHANGHAI_UTC_OFFSET_MS = 8 * 3_600_000  # China has kept UTC+8 without daylight saving since 1991
EPOCH = dt.date(1970, 1, 1)

# Relative volume by hour of day, local time: quiet nights, a lunch peak and a long evening peak.
HOURLY_WEIGHTS = np.array(
    "1.2 0.7 0.4 0.25 0.2 0.3 0.8 1.8 3.0 3.6 4.0 4.6 5.6 5.0 4.2 4.0 4.2 4.8 5.6 6.4 7.0 6.6 5.0 2.6".split(),
    dtype=float,
)
_INTRADAY_CDF = np.concatenate([[0.0], np.cumsum(HOURLY_WEIGHTS) / HOURLY_WEIGHTS.sum()])
_HOUR_EDGES_MS = np.arange(25, dtype=np.float64) * 3_600_000

WEEKEND_FACTOR = 1.3
SHOPPING_FESTIVALS = (
    # (month, day of the peak, peak factor, days of warm-up before it, warm-up factor)
    (6, 18, 3.0, 17, 1.2),  # 618
    (11, 11, 5.0, 10, 1.3),  # Double 11
)
SPRING_FESTIVAL_SHOPPING_DAYS = 14  # New Year shopping before the festival
SPRING_FESTIVAL_FACTOR = 1.8


def days_since_epoch(day: dt.date) -> int:
    return (day - EPOCH).days


def day_weights(start: dt.date, end: dt.date) -> np.ndarray:
    """Relative transaction volume of each day from start to end inclusive."""
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    weights = np.ones(len(days))
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    weights[weekday >= 5] *= WEEKEND_FACTOR
    month_start = days.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day_of_month = (days - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    for festival_month, peak_day, peak_factor, warm_up_days, warm_up_factor in SHOPPING_FESTIVALS:
        in_month = month == festival_month
        weights[in_month & (day_of_month == peak_day)] *= peak_factor
        weights[in_month & (day_of_month >= peak_day - warm_up_days) & (day_of_month < peak_day)] *= warm_up_factor
    for festival in SPRING_FESTIVALS:
        shopping = (days >= np.datetime64(festival - dt.timedelta(days=SPRING_FESTIVAL_SHOPPING_DAYS))) & (
            days <= np.datetime64(festival)
        )
        weights[shopping] *= SPRING_FESTIVAL_FACTOR
    return weights


def intraday_ms(quantiles: np.ndarray) -> np.ndarray:
    """Milliseconds after local midnight at the given quantiles of the hourly profile (monotone)."""
    return np.interp(quantiles, _INTRADAY_CDF, _HOUR_EDGES_MS).astype(np.int64)


class DailySchedule:
    """Spreads `rows` transactions over the days in proportion to their weights, in time order.

    Row r falls on the day whose share of rows contains r; within the day, rows keep
    their order, so txn_time never decreases as the row number grows, and any row's
    time is computed without looking at the others.
    """

    def __init__(self, start: dt.date, end: dt.date, rows: int):
        weights = day_weights(start, end)
        self.first_day = days_since_epoch(start)
        self.row_ends = np.floor(rows * (np.cumsum(weights) / weights.sum())).astype(np.int64)
        self.row_ends[-1] = rows
        self.row_starts = np.concatenate([[0], self.row_ends[:-1]])

    def times_ms(self, rows: np.ndarray, jitter: np.ndarray) -> np.ndarray:
        """UTC epoch milliseconds of the given row numbers; `jitter` is uniform in [0, 1), one per row."""
        day = np.searchsorted(self.row_ends, rows, side="right")
        start = self.row_starts[day]
        quantile = (rows - start + jitter) / (self.row_ends[day] - start)
        day_start_ms = (self.first_day + day) * DAY_MS - SHANGHAI_UTC_OFFSET_MS
        return day_start_ms + intraday_ms(quantile)
