"""The trading calendar of the Shanghai and Shenzhen stock exchanges, which share their holidays.

The calendar is data: `data/cn_exchange_holidays.csv` lists every weekday on which the exchanges
are closed (New Year, Spring Festival, Qingming, Labour Day, Dragon Boat, Mid-Autumn, National Day),
as published each year. A trading day is a weekday that is not in the file; the weekend days that
the State Council makes working days stay closed on the exchanges. Only the years the file covers
are known: asking about any other year raises ValueError rather than guessing.
"""

from __future__ import annotations

import csv
import datetime as dt
from functools import cache
from pathlib import Path

import numpy as np

HOLIDAYS_FILE = Path(__file__).with_name("data") / "cn_exchange_holidays.csv"


@cache
def exchange_holidays() -> frozenset[dt.date]:
    """Every weekday closure of the exchanges in the years the calendar covers."""
    with HOLIDAYS_FILE.open(encoding="utf-8", newline="") as file:
        return frozenset(dt.date.fromisoformat(row["date"]) for row in csv.DictReader(file))


@cache
def calendar_years() -> range:
    """The years the calendar covers: from the first to the last year in the file, without gaps."""
    years = sorted({day.year for day in exchange_holidays()})
    if years != list(range(years[0], years[-1] + 1)):
        raise ValueError(f"{HOLIDAYS_FILE.name} skips a year: it covers {years}")
    return range(years[0], years[-1] + 1)


def check_covered(day: dt.date) -> None:
    """Raise ValueError if the calendar does not know whether the exchanges open in `day`'s year."""
    years = calendar_years()
    if day.year not in years:
        raise ValueError(f"the exchange calendar covers {years[0]}-{years[-1]} only; {day.isoformat()} is outside it")


def trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """The trading days from `start` to `end` inclusive, as a datetime64[D] array in order."""
    check_covered(start)
    check_covered(end)
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    holidays = np.array(sorted(exchange_holidays()), dtype="datetime64[D]")
    return days[(weekday < 5) & ~np.isin(days, holidays)]
