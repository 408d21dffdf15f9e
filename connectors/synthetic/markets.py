"""Listed companies and the daily public attention they get (searches, news, tone): the raw material of
big-data index factors."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import ascii_digits, dates, fixed_width_strings, lookup, string_table
from .calendar import day_weights, days_since_epoch
from .keyed import block_rng, hash_normal, hash_uniform
from .people import geography
from .reference import (
    COMPANY_NAME_MIDDLES,
    COMPANY_NAME_PREFIXES,
    COMPANY_NAME_SUFFIX_BY_INDUSTRY,
    CSI_INDUSTRIES,
    INVENTED_TICKER_BLOCK_SIZE,
    INVENTED_TICKER_BLOCKS,
    LISTED_COMPANIES,
)
from .table import SyntheticTable

MAX_COMPANIES = len(LISTED_COMPANIES) + len(INVENTED_TICKER_BLOCKS) * INVENTED_TICKER_BLOCK_SIZE
DEFAULT_COMPANIES = 300
CONSUMER_INDUSTRIES = ("可选消费", "主要消费")  # attention to these follows shopping festivals

COMPANY_FIELDS = [("ticker", pa.string()), ("company_name", pa.string()), ("csi_industry", pa.string())]


@cache
def companies(seed: int, count: int) -> dict[str, np.ndarray | pa.Array]:
    """The first `count` companies: the well-known listed ones, then invented ones with codes from blocks
    that hold no real listing used here. Returns Arrow columns plus the numpy `industry` index."""
    listed = LISTED_COMPANIES[:count]
    invented = np.arange(max(count - len(LISTED_COMPANIES), 0), dtype=np.int64)
    block = invented % len(INVENTED_TICKER_BLOCKS)
    code = np.array([first for _, first, _ in INVENTED_TICKER_BLOCKS])[block] + invented // len(INVENTED_TICKER_BLOCKS)
    ticker_codes = np.empty((len(invented), 9), dtype=np.uint8)
    ticker_codes[:, 0:6] = ascii_digits(code, 6)
    ticker_codes[:, 6] = ord(".")
    ticker_codes[:, 7:9] = np.array([[ord(c) for c in suffix] for _, _, suffix in INVENTED_TICKER_BLOCKS])[block]
    industry = (hash_uniform(seed, "company.industry", invented) * len(CSI_INDUSTRIES)).astype(np.int64)
    name_parts = len(COMPANY_NAME_PREFIXES) * len(COMPANY_NAME_MIDDLES)
    invented_names = pc.binary_join_element_wise(
        lookup(geography().city_short_names, (invented // name_parts) % len(geography().city_names)),
        lookup(string_table(COMPANY_NAME_PREFIXES), invented % len(COMPANY_NAME_PREFIXES)),
        lookup(
            string_table(COMPANY_NAME_MIDDLES), (invented // len(COMPANY_NAME_PREFIXES)) % len(COMPANY_NAME_MIDDLES)
        ),
        lookup(string_table(COMPANY_NAME_SUFFIX_BY_INDUSTRY[name] for name in CSI_INDUSTRIES), industry),
        "",
    )
    all_industries = np.concatenate([[CSI_INDUSTRIES.index(c.csi_industry) for c in listed], industry]).astype(np.int64)
    exchanges = [name for name, _, _ in INVENTED_TICKER_BLOCKS]
    return {
        "ticker": pa.concat_arrays([string_table(c.ticker for c in listed), fixed_width_strings(ticker_codes)]),
        "company_name": pa.concat_arrays([string_table(c.name for c in listed), invented_names]),
        "csi_industry": lookup(string_table(CSI_INDUSTRIES), all_industries),
        "exchange": pa.concat_arrays(
            [
                string_table("SSE" if c.ticker.endswith(".SH") else "SZSE" for c in listed),
                lookup(string_table(exchanges), block),
            ]
        ),
        "industry": all_industries,
    }


class CompaniesTable(SyntheticTable):
    name = "companies"
    default_rows = DEFAULT_COMPANIES
    max_rows = MAX_COMPANIES
    schema = pa.schema([*COMPANY_FIELDS, ("exchange", pa.string())])

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        table = companies(self.seed, self.rows)
        return self.batch({field.name: table[field.name].slice(start, stop - start) for field in self.schema})


class StockAttentionTable(SyntheticTable):
    """One row per (date, company), in date order: search volume, news count and news tone.

    Each company has a steady level of attention; weekends are quieter, consumer
    companies draw more interest around shopping festivals, and now and then a
    company has a news event that multiplies its attention for a day.
    """

    name = "stock_attention"
    default_rows = 0  # unused: one row per company and day unless `rows` caps it
    options = frozenset({"companies", "start_date", "end_date", "until"})
    schema = pa.schema(
        [
            ("ticker", pa.string()),
            ("date", pa.date32()),
            ("search_volume", pa.int64()),
            ("news_count", pa.int32()),
            ("sentiment", pa.float64()),
            ("company_name", pa.string()),
            ("csi_industry", pa.string()),
        ]
    )

    @classmethod
    def check_options(cls, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        super().check_options(options, problems)
        if (options.get("companies") or 0) > MAX_COMPANIES:
            problems.append(("companies", f"at most {MAX_COMPANIES}"))

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.companies = options.get("companies") or DEFAULT_COMPANIES
        days = (self.end_date - self.start_date).days + 1
        self.rows = (
            min(days * self.companies, options["rows"]) if options.get("rows") is not None else days * self.companies
        )
        self.first_day = days_since_epoch(self.start_date)
        self.festival_boost = day_weights(self.start_date, self.end_date) ** 0.5
        company = np.arange(self.companies)
        self.base_searches = np.exp(7.5 + 1.2 * hash_normal(self.seed, "attention.searches", company))
        self.base_searches[: len(LISTED_COMPANIES)] *= 8.0  # household names
        self.base_news = np.exp(0.5 + 0.8 * hash_normal(self.seed, "attention.news", company))
        self.base_tone = 0.05 + 0.15 * hash_normal(self.seed, "attention.tone", company)
        industry = companies(self.seed, self.companies)["industry"]
        self.consumer_facing = np.isin(industry, [CSI_INDUSTRIES.index(name) for name in CONSUMER_INDUSTRIES])

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        rng = block_rng(self.seed, self.name, index)
        rows = np.arange(start, stop, dtype=np.int64)
        day, company = np.divmod(rows, self.companies)
        weekday = (self.first_day + day + 3) % 7  # 0 = Monday
        weekend = weekday >= 5
        event = rng.random(len(rows)) < 0.01
        event_size = np.where(event, 3.0 + 7.0 * rng.random(len(rows)), 1.0)
        seasonal = np.where(self.consumer_facing[company], self.festival_boost[day], 1.0)
        searches = self.base_searches[company] * seasonal * np.where(weekend, 0.7, 1.0) * event_size
        searches *= np.exp(0.25 * rng.standard_normal(len(rows)))
        news = rng.poisson(self.base_news[company] * np.where(weekend, 0.3, 1.0) * event_size)
        tone = self.base_tone[company] + 0.25 * rng.standard_normal(len(rows))
        tone += np.where(event, rng.choice([-0.8, 0.8], len(rows)), 0.0)
        table = companies(self.seed, self.companies)
        return self.batch(
            {
                "ticker": lookup(table["ticker"], company),
                "date": dates(self.first_day + day),
                "search_volume": pa.array(np.round(searches).astype(np.int64)),
                "news_count": pa.array(news.astype(np.int32)),
                "sentiment": pa.array(np.round(np.tanh(tone), 4)),
                "company_name": lookup(table["company_name"], company),
                "csi_industry": lookup(table["csi_industry"], company),
            }
        )

    def rows_through(self, day: dt.date) -> int:
        return max((day - self.start_date).days + 1, 0) * self.companies

    def watermark(self) -> str | None:
        emitted = self.emitted_rows
        if emitted == 0:
            return None
        return (self.start_date + dt.timedelta(days=(emitted - 1) // self.companies)).isoformat()
