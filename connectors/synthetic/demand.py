"""How much consumers want each listed company's brands, month by month: the hidden driver that links
card spending at brand-owned merchants (transactions) to the companies' share prices (market_daily).

Company c has a monthly demand log-level L(c, m) = 0.6 * L(c, m - 1) + s(c, m), where the shocks
s(c, m) ~ N(0, 0.12) are keyed by (seed, company, absolute month). The recursion starts from zero
at DEMAND_EPOCH, so a month's level is the same whatever date range a table covers; months before
the epoch have neither shock nor level.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np

from .keyed import hash_normal

DEMAND_PERSISTENCE = 0.6
DEMAND_SHOCK_SIGMA = 0.12
DEMAND_EPOCH = np.datetime64("2015-01", "M")
_MONTH_BITS = 16  # month numbers (months since 1970-01) stay below 2**16 until the year 7431


def month_number(day: dt.date | np.ndarray) -> int | np.ndarray:
    """Months since 1970-01 of a date (or of a datetime64[D] array)."""
    if isinstance(day, np.ndarray):
        return day.astype("datetime64[M]").astype(np.int64)
    return (day.year - 1970) * 12 + day.month - 1


def company_demand(seed: int, companies: int, first_month: int, last_month: int) -> tuple[np.ndarray, np.ndarray]:
    """(levels L, shocks s) of companies 0..companies-1 over months first_month..last_month inclusive
    (month numbers as `month_number` gives them): two float64 arrays of shape (companies, months).
    Company c's values do not depend on `companies` or on the months asked for."""
    levels, shocks = _demand_since_epoch(seed, companies, max(last_month, int(DEMAND_EPOCH.astype(np.int64))))
    epoch = int(DEMAND_EPOCH.astype(np.int64))
    months = np.arange(first_month, last_month + 1)
    inside = months >= epoch
    index = np.where(inside, months - epoch, 0)
    return np.where(inside, levels[:, index], 0.0), np.where(inside, shocks[:, index], 0.0)


@lru_cache(maxsize=8)
def _demand_since_epoch(seed: int, companies: int, last_month: int) -> tuple[np.ndarray, np.ndarray]:
    epoch = int(DEMAND_EPOCH.astype(np.int64))
    months = np.arange(epoch, last_month + 1, dtype=np.int64)
    keys = (np.arange(companies, dtype=np.int64)[:, None] << _MONTH_BITS) | months[None, :]
    shocks = DEMAND_SHOCK_SIGMA * hash_normal(seed, "company.demand", keys.ravel()).reshape(keys.shape)
    levels = np.empty_like(shocks)
    previous = np.zeros(companies)
    for month in range(len(months)):  # a loop over a few hundred months, each step vectorized over companies
        previous = DEMAND_PERSISTENCE * previous + shocks[:, month]
        levels[:, month] = previous
    levels.flags.writeable = shocks.flags.writeable = False
    return levels, shocks
