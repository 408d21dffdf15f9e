"""Brands of listed companies and the merchants that sell under them: the link from consumption data to stocks.

Only merchants of consumer-facing categories can belong to a listed company's brand: the categories
whose CSI industry is 可选消费, 主要消费 or 医药卫生, plus 3C数码 (信息技术) and 通信缴费 (电信业务),
whose shops are often a listed maker's or carrier's own. About a third of those merchants are
brand-owned, each by a company of the same CSI industry as its category (keyed by the merchant), so
a company in any other industry owns no merchant and never appears in consumption data. Each company
has one to three brands: its own name, then brand lines with a suffix.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import lookup, string_table
from .keyed import hash_uniform
from .markets import DEFAULT_COMPANIES, companies
from .merchant_attributes import (
    CATEGORY_INDUSTRIES,
    DEFAULT_MERCHANTS,
    MERCHANT_ID_BASE,
    merchant_categories,
    merchant_names,
)
from .reference import CSI_INDUSTRIES
from .table import SyntheticTable

BRAND_INDUSTRIES = ("可选消费", "主要消费", "医药卫生", "信息技术", "电信业务")
BRAND_OWNED_SHARE = 1 / 3  # of the merchants in those industries
BRAND_LINE_SUFFIXES = ("", "优品", "生活馆")  # a company's first brand is its name; more brands add a suffix
MERCHANT_SCAN = 65_536  # merchants examined at a time by the listed_brands table

_BRAND_INDUSTRY = np.isin(np.arange(len(CSI_INDUSTRIES)), [CSI_INDUSTRIES.index(name) for name in BRAND_INDUSTRIES])


def brand_industry_mask(industries: np.ndarray) -> np.ndarray:
    """Whether companies (or categories) of these CSI industry indices can own brands."""
    return _BRAND_INDUSTRY[industries]


@lru_cache(maxsize=16)
def _companies_by_industry(seed: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Company indices sorted by industry, and where each industry's run starts and how long it is."""
    industry = companies(seed, count)["industry"]
    order = np.argsort(industry, kind="stable")
    sizes = np.bincount(industry, minlength=len(CSI_INDUSTRIES))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return order, starts, sizes


def brand_owner(seed: int, merchants: np.ndarray, company_count: int) -> np.ndarray:
    """The index of the company (among the first `company_count`) whose brand each merchant sells under,
    or -1 for a merchant no listed company owns. A pure function of (seed, merchant, company_count)."""
    industry = CATEGORY_INDUSTRIES[merchant_categories(seed, merchants)]
    order, starts, sizes = _companies_by_industry(seed, company_count)
    owned = brand_industry_mask(industry) & (sizes[industry] > 0)
    owned &= hash_uniform(seed, "merchant.brand_owned", merchants) < BRAND_OWNED_SHARE
    pick = starts[industry] + (hash_uniform(seed, "merchant.brand_owner", merchants) * sizes[industry]).astype(np.int64)
    return np.where(owned, order[np.minimum(pick, len(order) - 1)], -1)


def brand_counts(seed: int, company_indices: np.ndarray) -> np.ndarray:
    """How many brands (1-3) each company has."""
    return 1 + (hash_uniform(seed, "company.brands", company_indices) * len(BRAND_LINE_SUFFIXES)).astype(np.int64)


def merchant_brands(seed: int, merchants: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Which of its owner's brands each brand-owned merchant sells under (0 .. brand count - 1)."""
    return (hash_uniform(seed, "merchant.brand", merchants) * brand_counts(seed, owners)).astype(np.int64)


def brand_names(seed: int, company_count: int, owners: np.ndarray, brands: np.ndarray) -> pa.StringArray:
    """The name of brand `brands[i]` of company `owners[i]`."""
    return pc.binary_join_element_wise(
        lookup(companies(seed, company_count)["company_name"], owners),
        lookup(string_table(BRAND_LINE_SUFFIXES), brands),
        "",
    )


class ListedBrandsTable(SyntheticTable):
    """One row per merchant that sells under a listed company's brand, in merchant order.

    merchant_id and merchant_name match the merchants table of the same seed; ticker, company_name,
    exchange and csi_industry match the companies table. `rows` caps the natural row count.
    """

    name = "listed_brands"
    default_rows = 0  # unused: one row per brand-owned merchant unless `rows` caps it
    options = frozenset({"companies", "merchants"})
    schema = pa.schema(
        [
            ("merchant_id", pa.int64()),
            ("merchant_name", pa.string()),
            ("brand", pa.string()),
            ("ticker", pa.string()),
            ("company_name", pa.string()),
            ("exchange", pa.string()),
            ("csi_industry", pa.string()),
        ]
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.companies: int = options.get("companies") or DEFAULT_COMPANIES
        self.merchants: int = options.get("merchants") or DEFAULT_MERCHANTS
        self.rows = options["rows"] if options.get("rows") is not None else None

    def blocks(self) -> Iterator[pa.RecordBatch]:
        remaining = self.rows
        for start in range(0, self.merchants, MERCHANT_SCAN):
            if remaining == 0:
                return
            merchants = np.arange(start, min(start + MERCHANT_SCAN, self.merchants), dtype=np.int64)
            owners = brand_owner(self.seed, merchants, self.companies)
            merchants, owners = merchants[owners >= 0], owners[owners >= 0]
            if remaining is not None:
                merchants, owners = merchants[:remaining], owners[:remaining]
                remaining -= len(merchants)
            if len(merchants):
                yield self.rows_for(merchants, owners)

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        raise NotImplementedError("listed_brands streams merchant by merchant; see blocks()")

    def rows_for(self, merchants: np.ndarray, owners: np.ndarray) -> pa.RecordBatch:
        table = companies(self.seed, self.companies)
        return self.batch(
            {
                "merchant_id": pa.array(MERCHANT_ID_BASE + merchants),
                "merchant_name": merchant_names(self.seed, merchants),
                "brand": brand_names(self.seed, self.companies, owners, merchant_brands(self.seed, merchants, owners)),
                **{
                    name: lookup(table[name], owners) for name in ("ticker", "company_name", "exchange", "csi_industry")
                },
            }
        )
