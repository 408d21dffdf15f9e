"""What merchant i is, as a pure function of (seed, i): its category, its city and its shop name.

The merchants table lists these; transactions and listed_brands show the same merchant the same way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import lookup, string_table
from .keyed import WeightedChoice, hash_uniform
from .people import geography
from .reference import CATEGORIES, CSI_INDUSTRIES, TRADE_NAMES

MERCHANT_ID_BASE = 100_000_000  # merchant i has id MERCHANT_ID_BASE + i
DEFAULT_MERCHANTS = 10_000

CATEGORY_NAMES = string_table(category.name for category in CATEGORIES)
CATEGORY_INDUSTRY_NAMES = string_table(category.csi_industry for category in CATEGORIES)
CATEGORY_INDUSTRIES = np.array([CSI_INDUSTRIES.index(category.csi_industry) for category in CATEGORIES])
_CATEGORY_CHOICE = WeightedChoice([category.merchant_share for category in CATEGORIES])
_TRADE_NAMES = string_table(TRADE_NAMES)
_SHOP_SUFFIXES = string_table(suffix for category in CATEGORIES for suffix in category.shop_suffixes)
_SHOP_SUFFIX_START = np.cumsum([0] + [len(category.shop_suffixes) for category in CATEGORIES])


def merchant_categories(seed: int, merchants: np.ndarray) -> np.ndarray:
    """The category index of each merchant (by index in the population): fixed by (seed, merchant)."""
    return _CATEGORY_CHOICE.pick(hash_uniform(seed, "merchant.category", merchants))


def merchant_cities(seed: int, merchants: np.ndarray) -> np.ndarray:
    """The city index (into reference.CITIES) of each merchant."""
    return geography().random_cities(hash_uniform(seed, "merchant.city", merchants))


def merchant_names(seed: int, merchants: np.ndarray) -> pa.StringArray:
    """Each merchant's shop name: city, trade name and a suffix of its category (`深圳华美服饰`)."""
    category = merchant_categories(seed, merchants)
    city = merchant_cities(seed, merchants)
    trade_name = (hash_uniform(seed, "merchant.trade_name", merchants) * len(TRADE_NAMES)).astype(np.int64)
    suffix_count = np.diff(_SHOP_SUFFIX_START)[category]
    suffix = _SHOP_SUFFIX_START[category] + (hash_uniform(seed, "merchant.suffix", merchants) * suffix_count).astype(
        np.int64
    )
    return pc.binary_join_element_wise(
        lookup(geography().city_short_names, city), lookup(_TRADE_NAMES, trade_name), lookup(_SHOP_SUFFIXES, suffix), ""
    )
