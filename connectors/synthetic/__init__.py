"""The `synthetic` connector: realistic, deterministic Chinese retail-finance data at any scale.

Tables: consumers, merchants, companies, transactions, loans, repayments,
credit_profiles, stock_attention, listed_brands, market_daily (see docs/connectors.md
for their columns). listed_brands links merchants to listed companies; their demand
moves spending at those merchants and, by a planted lag, their market_daily returns.
Everything is vectorized numpy/Arrow and streamed in blocks, so memory stays
bounded however many rows are asked for, and the same seed always gives the
same bytes, whatever the batch size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from ..base import DEFAULT_BATCH_ROWS, Connector, Option, split_batches
from .brands import ListedBrandsTable
from .commerce import MerchantsTable, TransactionsTable
from .consumer_tables import ConsumersTable, CreditProfilesTable
from .lending import LoansTable, RepaymentsTable
from .market_daily import MarketDailyTable
from .markets import MAX_COMPANIES, CompaniesTable, StockAttentionTable
from .people import max_consumers
from .resident_id import (
    is_valid_resident_id,
    resident_id_check_char,
    resident_id_check_chars,
    valid_resident_id_mask,
)
from .table import SyntheticTable

__all__ = [
    "TABLES",
    "SyntheticConnector",
    "is_valid_resident_id",
    "resident_id_check_char",
    "resident_id_check_chars",
    "valid_resident_id_mask",
]

TABLES: dict[str, type[SyntheticTable]] = {
    table.name: table
    for table in (
        ConsumersTable,
        MerchantsTable,
        CompaniesTable,
        TransactionsTable,
        LoansTable,
        RepaymentsTable,
        CreditProfilesTable,
        StockAttentionTable,
        ListedBrandsTable,
        MarketDailyTable,
    )
}
TABLE_SPECIFIC_OPTIONS = (
    "consumers",
    "merchants",
    "companies",
    "loans",
    "start_date",
    "end_date",
    "as_of",
    "until",
)


class SyntheticConnector(Connector):
    kind = "synthetic"
    declared_options = (
        Option("table", str, required=True, choices=tuple(TABLES), help="which table to generate"),
        Option(
            "rows",
            int,
            minimum=0,
            help="rows to generate (a cap for repayments, stock_attention, listed_brands and market_daily)",
        ),
        Option("seed", int, default=42, minimum=0, maximum=2**63 - 1, help="same seed, same bytes"),
        Option("consumers", int, minimum=1, maximum=max_consumers(), help="consumer population size"),
        Option("merchants", int, minimum=1, maximum=10**8, help="merchant population size"),
        Option(
            "companies",
            int,
            minimum=1,
            maximum=MAX_COMPANIES,
            help="the first N companies of the companies table that stock_attention, market_daily and "
            "listed_brands cover and whose brands transactions know (default 300)",
        ),
        Option("loans", int, minimum=1, help="loans whose instalments repayments lists"),
        Option("start_date", dt.date, help="first day (default 2024-01-01)"),
        Option("end_date", dt.date, help="last day, inclusive (default 2025-12-31)"),
        Option("as_of", dt.date, help="the day loan statuses and credit profiles describe (default end_date)"),
        Option(
            "until",
            dt.date,
            help="emit only the rows up to this day (transactions, stock_attention, market_daily): "
            "the data as known that day, a prefix of the same stream",
        ),
    )

    def __init__(self, options: Mapping[str, Any], *, batch_rows: int = DEFAULT_BATCH_ROWS):
        super().__init__(options, batch_rows=batch_rows)
        self.table = TABLES[self.options["table"]](self.options)

    def check_options(self, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        table = TABLES.get(options["table"])
        if table is None:
            return
        for name in TABLE_SPECIFIC_OPTIONS:
            if options.get(name) is not None and name not in table.options:
                problems.append((name, f"is not an option of the {table.name} table"))
        table.check_options(options, problems)

    def schema(self) -> pa.Schema:
        return self.table.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        return split_batches(self.table.blocks(), self.batch_rows)

    def watermark(self) -> str | None:
        return self.table.watermark()
