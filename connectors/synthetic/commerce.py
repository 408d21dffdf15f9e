"""Merchants and card/app transactions: who bought what, where, when, through which channel, for how much."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from .arrays import from_buffer, lookup, round_cents, string_table
from .brands import brand_owner
from .calendar import DAY_MS, SHANGHAI_UTC_OFFSET_MS, DailySchedule, days_since_epoch
from .demand import company_demand, month_number
from .keyed import WeightedChoice, block_rng
from .markets import DEFAULT_COMPANIES
from .merchant_attributes import (
    CATEGORY_INDUSTRY_NAMES,
    CATEGORY_NAMES,
    DEFAULT_MERCHANTS,
    MERCHANT_ID_BASE,
    merchant_categories,
    merchant_cities,
    merchant_names,
)
from .people import CONSUMER_COLUMNS, Population, geography, max_consumers
from .reference import CATEGORIES, CHANNELS
from .table import SyntheticTable

__all__ = ["DEFAULT_MERCHANTS", "MERCHANT_ID_BASE", "MerchantsTable", "TransactionsTable", "merchant_categories"]

MIN_DEFAULT_CONSUMERS = 1_000
TIMEZONE = "Asia/Shanghai"

_CHANNEL_NAMES = string_table(CHANNELS)
_CHANNEL_CHOICE = WeightedChoice([category.channel_shares for category in CATEGORIES])
_LOG_MEDIAN_AMOUNT = np.log([category.median_amount_cny for category in CATEGORIES])
_AMOUNT_SIGMA = np.array([category.amount_sigma for category in CATEGORIES])
MIN_AMOUNT_CNY = 0.01


def skewed_index(uniform: np.ndarray, population: int) -> np.ndarray:
    """An index into [0, population) where low indices are much more frequent (a few very active
    consumers and popular shops): the density falls off like 1/sqrt(index)."""
    return np.minimum((uniform * uniform * population).astype(np.int64), population - 1)


class MerchantsTable(SyntheticTable):
    name = "merchants"
    default_rows = DEFAULT_MERCHANTS
    schema = pa.schema(
        [
            ("merchant_id", pa.int64()),
            ("merchant_name", pa.string()),
            ("category", pa.string()),
            ("csi_industry", pa.string()),
            ("province", pa.string()),
            ("city", pa.string()),
        ]
    )

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        geo = geography()
        merchants = np.arange(start, stop, dtype=np.int64)
        category = merchant_categories(self.seed, merchants)
        city = merchant_cities(self.seed, merchants)
        return self.batch(
            {
                "merchant_id": pa.array(MERCHANT_ID_BASE + merchants),
                "merchant_name": merchant_names(self.seed, merchants),
                "category": lookup(CATEGORY_NAMES, category),
                "csi_industry": lookup(CATEGORY_INDUSTRY_NAMES, category),
                "province": lookup(geo.city_provinces, city),
                "city": lookup(geo.city_names, city),
            }
        )


class TransactionsTable(SyntheticTable):
    """Purchases in time order. Consumer and merchant attributes match the consumers and merchants tables
    of the same seed (consumer_id i is row i of consumers; merchant_id is MERCHANT_ID_BASE + row).

    At a merchant that sells under a listed company's brand (see brands.py, among the first `companies`
    companies), the amount is scaled by exp(L) of the owner's demand level in the month of the purchase
    (Shanghai time; see demand.py); every other amount is independent of the companies.
    `until` cuts the stream after that local day; `rows` still counts the whole start..end range.
    """

    name = "transactions"
    default_rows = 1_000_000
    options = frozenset({"consumers", "merchants", "companies", "start_date", "end_date", "until"})
    schema = pa.schema(
        [
            ("txn_id", pa.int64()),
            ("txn_time", pa.timestamp("ms", tz=TIMEZONE)),
            ("consumer_id", pa.int64()),
            ("id_number", pa.string()),
            ("name", pa.string()),
            ("phone", pa.string()),
            ("birth_date", pa.date32()),
            ("gender", pa.string()),
            ("province", pa.string()),
            ("city", pa.string()),
            ("merchant_id", pa.int64()),
            ("category", pa.string()),
            ("csi_industry", pa.string()),
            ("channel", pa.string()),
            ("amount", pa.float64()),
        ]
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        default_consumers = min(max(self.rows // 20, MIN_DEFAULT_CONSUMERS), max_consumers())
        self.consumers: int = options.get("consumers") or default_consumers
        self.merchants: int = options.get("merchants") or DEFAULT_MERCHANTS
        self.companies: int = options.get("companies") or DEFAULT_COMPANIES
        self.population = Population(self.seed)
        self.first_month = month_number(self.start_date)
        self.demand_levels, _ = company_demand(self.seed, self.companies, self.first_month, month_number(self.end_date))

    @cached_property
    def schedule(self) -> DailySchedule:
        return DailySchedule(self.start_date, self.end_date, self.rows)

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        rng = block_rng(self.seed, self.name, index)
        rows = np.arange(start, stop, dtype=np.int64)
        times_ms = self.schedule.times_ms(rows, rng.random(len(rows)))
        consumer = skewed_index(rng.random(len(rows)), self.consumers)
        merchant = skewed_index(rng.random(len(rows)), self.merchants)
        category = merchant_categories(self.seed, merchant)
        channel = _CHANNEL_CHOICE.pick(rng.random(len(rows)), category)
        log_amount = _LOG_MEDIAN_AMOUNT[category] + _AMOUNT_SIGMA[category] * rng.standard_normal(len(rows))
        owner = brand_owner(self.seed, merchant, self.companies)
        branded = owner >= 0
        local_day = (times_ms[branded] + SHANGHAI_UTC_OFFSET_MS) // DAY_MS
        month = month_number(local_day.astype("datetime64[D]")) - self.first_month
        log_amount[branded] += self.demand_levels[owner[branded], month]
        amount = np.maximum(round_cents(np.exp(log_amount)), MIN_AMOUNT_CNY)
        return self.batch(
            {
                "txn_id": pa.array(rows + 1),
                "txn_time": from_buffer(self.schema.field("txn_time").type, times_ms, np.int64),
                "consumer_id": pa.array(consumer),
                **self.population.columns(consumer, CONSUMER_COLUMNS[:-1]),
                "merchant_id": pa.array(MERCHANT_ID_BASE + merchant),
                "category": lookup(CATEGORY_NAMES, category),
                "csi_industry": lookup(CATEGORY_INDUSTRY_NAMES, category),
                "channel": lookup(_CHANNEL_NAMES, channel),
                "amount": pa.array(amount),
            }
        )

    def rows_through(self, day: dt.date) -> int:
        """Rows are spread over the local days in order, so the rows up to `day` are a prefix."""
        days = days_since_epoch(day) - days_since_epoch(self.start_date) + 1
        if days <= 0:
            return 0
        return int(self.schedule.row_ends[min(days, len(self.schedule.row_ends)) - 1])

    def watermark(self) -> str | None:
        """The time of the last transaction emitted (times never decrease with txn_id)."""
        last = self.last_emitted_row()
        return None if last is None else last.column("txn_time")[0].as_py().isoformat()
