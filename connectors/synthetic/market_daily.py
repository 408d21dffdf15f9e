"""Daily prices, total returns, shares and corporate actions of the listed companies, on exchange trading days.

Synthetic, like every table here: no figure is a real company's. Daily total returns are a market
factor times the company's beta, plus an industry factor and idiosyncratic noise (daily volatility
about 1.5-2.5%), limited to ±10%. The link to consumption is planted on purpose, so that a demo index
has something to find: for a company of an industry that can own brands (see brands.py), the trading
days of month m+1 carry a drift that adds κ·s(c, m) (κ = 0.12) to its return over that month, where
s(c, m) is the company's demand shock of month m (demand.py), the same shock that moves spending at
its brands' merchants in the transactions table. A backtest on this data finds that signal because
it was put there; it is no evidence about real markets.

Corporate actions are consistent: on an ex-date, close_t = (close_{t-1}·(1 + R_t) - dividend_t) / split_t
and total_return_index_t = total_return_index_{t-1}·(1 + R_t), where R_t is the day's total return;
shares outstanding and free float multiply by split_t, so a split does not move the market cap.
The whole range is computed at once per (trading day, company) matrix, cached, and cut into blocks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from .arrays import dates, lookup
from .brands import brand_industry_mask
from .demand import company_demand, month_number
from .keyed import hash_normal, hash_uniform
from .markets import DEFAULT_COMPANIES, companies
from .reference import CSI_INDUSTRIES, LISTED_COMPANIES
from .table import DEFAULT_END_DATE, DEFAULT_START_DATE, SyntheticTable
from .trading_calendar import check_covered, trading_days

SIGNAL_KAPPA = 0.12  # the planted share of last month's demand shock in this month's excess return
PRICE_LIMIT = 0.10  # daily total returns are limited to ±10%
MARKET_VOLATILITY = 0.010
INDUSTRY_VOLATILITY = 0.007
DAILY_DRIFT = 0.0002
TRI_BASE = 1000.0
DIVIDEND_PAYER_SHARE = 0.85
DIVIDEND_WINDOW = (5, 1, 92)  # ex-dates fall in the 92 days from May 1 (to July 31)
SPLIT_SHARE = 0.10
SPLIT_RATIOS = np.array([1.2, 1.5, 2.0])  # new shares per old share; round lots keep share counts whole
LOCKUP_EXPIRY_SHARE = 0.15  # companies whose free float grows once when a lock-up expires
ROUND_LOT = 100
_DAY_BITS = 16  # day numbers (days since 1970-01-01) stay below 2**16 until the year 2149


@dataclass(frozen=True)
class MarketFrame:
    """The whole table as (trading day, company) matrices, plus each trading day's number since 1970-01-01."""

    day_numbers: np.ndarray
    close: np.ndarray
    total_return_index: np.ndarray
    shares_outstanding: np.ndarray
    free_float_shares: np.ndarray
    market_cap: np.ndarray
    dividend_per_share: np.ndarray
    split_ratio: np.ndarray


def _log_uniform(uniform: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.exp(np.log(low) + uniform * (np.log(high) - np.log(low)))


def _day_keys(first: np.ndarray, day_numbers: np.ndarray) -> np.ndarray:
    """Keys for keyed hashing of (entity, day) pairs, as a (days, entities) array."""
    return (first[None, :].astype(np.int64) << _DAY_BITS) | day_numbers[:, None]


def daily_total_returns(seed: int, count: int, days: np.ndarray) -> np.ndarray:
    """Each company's total return on each trading day (a (days, companies) array), with the planted drift.
    A day's returns do not depend on the range asked for."""
    day_numbers = days.astype(np.int64)
    company = np.arange(count, dtype=np.int64)
    industry = companies(seed, count)["industry"]
    beta = 0.7 + 0.6 * hash_uniform(seed, "market.beta", company)
    idiosyncratic = 0.010 + 0.010 * hash_uniform(seed, "market.idiosyncratic", company)
    market = MARKET_VOLATILITY * hash_normal(seed, "market.factor", day_numbers)
    industries = np.arange(len(CSI_INDUSTRIES))
    industry_factor = INDUSTRY_VOLATILITY * hash_normal(seed, "market.industry", _day_keys(industries, day_numbers))
    noise = hash_normal(seed, "market.noise", _day_keys(company, day_numbers))
    log_return = DAILY_DRIFT + market[:, None] * beta + industry_factor[:, industry] + noise * idiosyncratic
    log_return += demand_drift(seed, count, days) * brand_industry_mask(industry)
    return np.clip(np.expm1(log_return), -PRICE_LIMIT, PRICE_LIMIT)


def demand_drift(seed: int, count: int, days: np.ndarray) -> np.ndarray:
    """κ·s(c, m - 1) spread evenly over the trading days of month m (all of the month's trading days in
    the calendar, so the drift of a day does not depend on the range asked for)."""
    months = month_number(days)
    first_month, last_month = int(months[0]), int(months[-1])
    month_days = trading_days(_month_start(first_month), _month_start(last_month + 1) - dt.timedelta(days=1))
    trading_days_in_month = np.bincount(month_number(month_days) - first_month)
    _, shocks = company_demand(seed, count, first_month - 1, last_month)
    previous_shock = shocks[:, months - first_month].T  # shocks[:, k] is month first_month - 1 + k
    return SIGNAL_KAPPA * previous_shock / trading_days_in_month[months - first_month][:, None]


def _month_start(month: int) -> dt.date:
    return dt.date(1970 + month // 12, month % 12 + 1, 1)


@lru_cache(maxsize=4)
def market_frame(seed: int, count: int, start: dt.date, end: dt.date) -> MarketFrame:
    """Every column of market_daily over the trading days from start to end, for the first `count` companies."""
    days = trading_days(start, end)
    day_numbers = days.astype(np.int64)
    company = np.arange(count, dtype=np.int64)
    returns = daily_total_returns(seed, count, days)
    returns[0] = 0.0  # the first row is the base of the total return index
    dividend_yield = _dividend_yields(seed, company, days)
    split = _splits(seed, company, len(days))

    listed = company < len(LISTED_COMPANIES)
    price_draw, cap_draw = hash_uniform(seed, "market.price", company), hash_uniform(seed, "market.cap", company)
    first_close = np.where(listed, _log_uniform(price_draw, 20.0, 500.0), _log_uniform(price_draw, 8.0, 100.0))
    first_cap = np.where(listed, _log_uniform(cap_draw, 100e9, 2500e9), _log_uniform(cap_draw, 2e9, 80e9))
    first_shares = np.maximum(np.round(first_cap / first_close / ROUND_LOT), 1).astype(np.int64) * ROUND_LOT

    close = np.empty((len(days), count))
    dividend = np.zeros((len(days), count))
    close[0] = first_close
    for day in range(1, len(days)):  # a loop over trading days (a few hundred), vectorized over companies
        dividend[day] = np.round(dividend_yield[day] * close[day - 1], 3)
        close[day] = (close[day - 1] * (1.0 + returns[day]) - dividend[day]) / split[day]
    close = np.round(close, 2)

    split_factor = np.cumprod(split, axis=0)
    shares = np.round(first_shares * split_factor).astype(np.int64)
    float_ratio = _free_float_ratios(seed, company, len(days))
    float_lots = np.round(float_ratio * first_shares / ROUND_LOT) * ROUND_LOT
    free_float = np.round(float_lots * split_factor).astype(np.int64)
    frame = MarketFrame(
        day_numbers=day_numbers,
        close=close,
        total_return_index=np.round(TRI_BASE * np.cumprod(1.0 + returns, axis=0), 4),
        shares_outstanding=shares,
        free_float_shares=free_float,
        market_cap=np.round(close * shares, 2),
        dividend_per_share=dividend,
        split_ratio=split,
    )
    for values in vars(frame).values():
        values.flags.writeable = False
    return frame


def _dividend_yields(seed: int, company: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The cash dividend as a share of the previous close, on each ex-date (one a year, May to July)."""
    day_numbers = days.astype(np.int64)
    yields = np.zeros((len(days), len(company)))
    payer = hash_uniform(seed, "dividend.payer", company) < DIVIDEND_PAYER_SHARE
    usual_yield = 0.006 + 0.027 * hash_uniform(seed, "dividend.yield", company)
    first_year, last_year = days[0].astype("datetime64[Y]").astype(int), days[-1].astype("datetime64[Y]").astype(int)
    month, day, window = DIVIDEND_WINDOW
    for year in range(1970 + first_year, 1970 + last_year + 1):  # a loop over the years of the range
        keys = company * 10_000 + year
        target = (dt.date(year, month, day) - dt.date(1970, 1, 1)).days
        target += (hash_uniform(seed, "dividend.day", keys) * window).astype(np.int64)
        index = np.searchsorted(day_numbers, target)
        valid = payer & (index >= 1) & (index < len(days)) & (target >= day_numbers[0])
        year_yield = usual_yield * (0.8 + 0.4 * hash_uniform(seed, "dividend.year", keys))
        yields[index[valid], company[valid]] = year_yield[valid]
    return yields


def _splits(seed: int, company: np.ndarray, day_count: int) -> np.ndarray:
    """The split ratio on each day: 1.0, except on the one ex-date of the companies that split."""
    split = np.ones((day_count, len(company)))
    if day_count < 2:
        return split
    splits = hash_uniform(seed, "split.happens", company) < SPLIT_SHARE
    day = 1 + (hash_uniform(seed, "split.day", company) * (day_count - 1)).astype(np.int64)
    ratio = SPLIT_RATIOS[(hash_uniform(seed, "split.ratio", company) * len(SPLIT_RATIOS)).astype(np.int64)]
    split[day[splits], company[splits]] = ratio[splits]
    return split


def _free_float_ratios(seed: int, company: np.ndarray, day_count: int) -> np.ndarray:
    """The free-float share of each company on each day: 20-80%, rising once (to at most 95%) for a few."""
    base = 0.20 + 0.60 * hash_uniform(seed, "float.ratio", company)
    expires = hash_uniform(seed, "float.lockup", company) < LOCKUP_EXPIRY_SHARE
    expiry_day = (hash_uniform(seed, "float.lockup_day", company) * day_count).astype(np.int64)
    rise = np.where(expires, 0.05 + 0.10 * hash_uniform(seed, "float.rise", company), 0.0)
    after_expiry = np.arange(day_count)[:, None] >= expiry_day[None, :]
    return np.minimum(base + rise * after_expiry, 0.95)


class MarketDailyTable(SyntheticTable):
    """One row per (trading day, company), in (date, ticker) order: close, total return index, shares,
    market cap and corporate actions. `rows` caps the natural row count; `until` cuts after that day."""

    name = "market_daily"
    default_rows = 0  # unused: one row per trading day and company unless `rows` caps it
    options = frozenset({"companies", "start_date", "end_date", "until"})
    schema = pa.schema(
        [
            ("date", pa.date32()),
            ("ticker", pa.string()),
            ("exchange", pa.string()),
            ("company_name", pa.string()),
            ("csi_industry", pa.string()),
            ("close", pa.float64()),
            ("total_return_index", pa.float64()),
            ("shares_outstanding", pa.int64()),
            ("free_float_shares", pa.int64()),
            ("market_cap", pa.float64()),
            ("dividend_per_share", pa.float64()),
            ("split_ratio", pa.float64()),
        ]
    )

    @classmethod
    def check_options(cls, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        super().check_options(options, problems)
        for name, default in (("start_date", DEFAULT_START_DATE), ("end_date", DEFAULT_END_DATE)):
            try:
                check_covered(options.get(name) or default)
            except ValueError as error:
                problems.append((name, str(error)))

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.companies: int = options.get("companies") or DEFAULT_COMPANIES
        natural = len(self.frame.day_numbers) * self.companies
        self.rows = natural if options.get("rows") is None else min(natural, options["rows"])

    @property
    def frame(self) -> MarketFrame:
        return market_frame(self.seed, self.companies, self.start_date, self.end_date)

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        frame = self.frame
        day, company = np.divmod(np.arange(start, stop, dtype=np.int64), self.companies)
        table = companies(self.seed, self.companies)
        return self.batch(
            {
                "date": dates(frame.day_numbers[day]),
                **{
                    name: lookup(table[name], company)
                    for name in ("ticker", "exchange", "company_name", "csi_industry")
                },
                **{
                    name: pa.array(values[day, company])
                    for name, values in vars(frame).items()
                    if name != "day_numbers"
                },
            }
        )

    def rows_through(self, day: dt.date) -> int:
        trading = np.searchsorted(self.frame.day_numbers, (day - dt.date(1970, 1, 1)).days, side="right")
        return int(trading) * self.companies

    def watermark(self) -> str | None:
        emitted = self.emitted_rows
        if emitted == 0:
            return None
        last_day = int(self.frame.day_numbers[(emitted - 1) // self.companies])
        return (dt.date(1970, 1, 1) + dt.timedelta(days=last_day)).isoformat()
