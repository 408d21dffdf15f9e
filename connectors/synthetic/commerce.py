"""Merchants and card/app transactions: who bought what, where, when, through which channel, for how much."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import from_buffer, lookup, round_cents, string_table
from .calendar import DailySchedule
from .keyed import WeightedChoice, block_rng, hash_uniform
from .people import CONSUMER_COLUMNS, Population, geography, max_consumers
from .reference import CATEGORIES, CHANNELS, TRADE_NAMES
from .table import SyntheticTable

MERCHANT_ID_BASE = 100_000_000  # merchant i has id MERCHANT_ID_BASE + i
DEFAULT_MERCHANTS = 10_000
MIN_DEFAULT_CONSUMERS = 1_000
TIMEZONE = "Asia/Shanghai"

_CATEGORY_NAMES = string_table(category.name for category in CATEGORIES)
_CATEGORY_INDUSTRIES = string_table(category.csi_industry for category in CATEGORIES)
_CATEGORY_CHOICE = WeightedChoice([category.merchant_share for category in CATEGORIES])
_CHANNEL_NAMES = string_table(CHANNELS)
_CHANNEL_CHOICE = WeightedChoice([category.channel_shares for category in CATEGORIES])
_LOG_MEDIAN_AMOUNT = np.log([category.median_amount_cny for category in CATEGORIES])
_AMOUNT_SIGMA = np.array([category.amount_sigma for category in CATEGORIES])
_TRADE_NAMES = string_table(TRADE_NAMES)
_SHOP_SUFFIXES = string_table(suffix for category in CATEGORIES for suffix in category.shop_suffixes)
_SHOP_SUFFIX_START = np.cumsum([0] + [len(category.shop_suffixes) for category in CATEGORIES])
MIN_AMOUNT_CNY = 0.01


def merchant_categories(seed: int, merchants: np.ndarray) -> np.ndarray:
    """The category index of each merchant (by index in the population): fixed by (seed, merchant)."""
    return _CATEGORY_CHOICE.pick(hash_uniform(seed, "merchant.category", merchants))


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
        city = geo.random_cities(hash_uniform(self.seed, "merchant.city", merchants))
        trade_name = (hash_uniform(self.seed, "merchant.trade_name", merchants) * len(TRADE_NAMES)).astype(np.int64)
        suffix_count = np.diff(_SHOP_SUFFIX_START)[category]
        suffix = _SHOP_SUFFIX_START[category] + (
            hash_uniform(self.seed, "merchant.suffix", merchants) * suffix_count
        ).astype(np.int64)
        name = pc.binary_join_element_wise(
            lookup(geo.city_short_names, city), lookup(_TRADE_NAMES, trade_name), lookup(_SHOP_SUFFIXES, suffix), ""
        )
        return self.batch(
            {
                "merchant_id": pa.array(MERCHANT_ID_BASE + merchants),
                "merchant_name": name,
                "category": lookup(_CATEGORY_NAMES, category),
                "csi_industry": lookup(_CATEGORY_INDUSTRIES, category),
                "province": lookup(geo.city_provinces, city),
                "city": lookup(geo.city_names, city),
            }
        )


class TransactionsTable(SyntheticTable):
    """Purchases in time order. Consumer and merchant attributes match the consumers and merchants tables
    of the same seed (consumer_id i is row i of consumers; merchant_id is MERCHANT_ID_BASE + row)."""

    name = "transactions"
    default_rows = 1_000_000
    options = frozenset({"consumers", "merchants", "start_date", "end_date"})
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
        self.population = Population(self.seed)

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
        amount = np.maximum(round_cents(np.exp(log_amount)), MIN_AMOUNT_CNY)
        return self.batch(
            {
                "txn_id": pa.array(rows + 1),
                "txn_time": from_buffer(self.schema.field("txn_time").type, times_ms, np.int64),
                "consumer_id": pa.array(consumer),
                **self.population.columns(consumer, CONSUMER_COLUMNS[:-1]),
                "merchant_id": pa.array(MERCHANT_ID_BASE + merchant),
                "category": lookup(_CATEGORY_NAMES, category),
                "csi_industry": lookup(_CATEGORY_INDUSTRIES, category),
                "channel": lookup(_CHANNEL_NAMES, channel),
                "amount": pa.array(amount),
            }
        )

    def watermark(self) -> str | None:
        """The time of the last transaction (times never decrease with txn_id)."""
        if self.rows == 0:
            return None
        last_block = (self.rows - 1) // self.block_rows
        start = last_block * self.block_rows
        last = self.block(last_block, start, self.rows).column("txn_time")[-1].as_py()
        return last.isoformat()
