"""The consumer population: every attribute of consumer i is a pure function of (seed, i).

Consumer ids are mapped by a keyed bijection to distinct (district, sequence
number, birth day) triples, so ID numbers never repeat within a population and
every table that mentions consumer i (consumers, transactions, loans,
credit_profiles) shows the same person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import ascii_digits, dates, fixed_width_strings, lookup, string_table
from .calendar import days_since_epoch
from .keyed import PairPermutation, WeightedChoice, hash_lanes, hash_uniform, scale_lane
from .reference import (
    CITIES,
    GIVEN_NAME_CHARS,
    INCOME_BAND_SHARES_BY_TIER,
    INCOME_BANDS,
    PHONE_PREFIXES,
    SURNAMES,
    TWO_CHAR_GIVEN_NAME_SHARE,
)
from .resident_id import CHECK_CHAR_CODES, WEIGHTS

BIRTH_FIRST_DAY = dt.date(1950, 1, 1)
BIRTH_LAST_DAY = dt.date(2006, 12, 31)
SEQUENCES_PER_DAY = 1000  # the 3-digit sequence of an ID number; its parity is the gender

CONSUMER_COLUMNS = ("id_number", "name", "phone", "birth_date", "gender", "province", "city", "income_band")


class _Geography:
    """Lookup tables over every generated district: its city, and the ASCII code and check-sum share of its code."""

    def __init__(self):
        district_cities, district_codes = [], []
        for city_index, city in enumerate(CITIES):
            for suffix in city.district_suffixes:
                district_cities.append(city_index)
                district_codes.append(int(city.code + suffix))
        self.district_city = np.array(district_cities, dtype=np.int64)
        self.district_ascii = ascii_digits(np.array(district_codes), 6)
        self.district_checksum = (self.district_ascii - ord("0")).astype(np.int64) @ WEIGHTS[0:6]
        self.city_names = string_table(city.name for city in CITIES)
        self.city_short_names = string_table(city.short_name for city in CITIES)
        self.city_provinces = string_table(city.province for city in CITIES)
        self.city_tiers = np.array([city.tier for city in CITIES], dtype=np.int64)

    @property
    def districts(self) -> int:
        return len(self.district_city)

    def random_cities(self, uniform: np.ndarray) -> np.ndarray:
        """Cities drawn in proportion to their number of districts (a stand-in for population)."""
        return self.district_city[(uniform * self.districts).astype(np.int64)]


@cache
def geography() -> _Geography:
    return _Geography()


class _BirthDays:
    """Lookup tables over every possible birth day: YYYYMMDD in ASCII and its check-sum share."""

    def __init__(self):
        self.first = days_since_epoch(BIRTH_FIRST_DAY)
        days = np.arange(np.datetime64(BIRTH_FIRST_DAY), np.datetime64(BIRTH_LAST_DAY) + 1)
        year = days.astype("datetime64[Y]").astype(np.int64) + 1970
        month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        day = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        self.ascii = ascii_digits(year * 10_000 + month * 100 + day, 8)
        self.checksum = (self.ascii - ord("0")).astype(np.int64) @ WEIGHTS[6:14]

    def __len__(self) -> int:
        return len(self.ascii)


@cache
def birth_days() -> _BirthDays:
    return _BirthDays()


@cache
def _sequence_tables() -> tuple[np.ndarray, np.ndarray]:
    ascii_codes = ascii_digits(np.arange(SEQUENCES_PER_DAY), 3)
    return ascii_codes, (ascii_codes - ord("0")).astype(np.int64) @ WEIGHTS[14:17]


@cache
def name_table() -> tuple[pa.StringArray, dict[str, int], int]:
    """Every full name (surname + one- or two-character given name) for both genders, built once.

    Returns the names, the offset of each gender's block, and the number of given names per surname
    in a block (a gender's given names are its single characters, then every pair of them).
    """
    blocks, offsets, given_per_surname = [], {}, None
    for gender in ("F", "M"):
        chars = GIVEN_NAME_CHARS[gender]
        given = list(chars) + [first + second for first in chars for second in chars]
        given_per_surname = given_per_surname or len(given)
        if len(given) != given_per_surname:
            raise ValueError("both genders need the same number of given-name characters")
        surnames = pa.array(np.repeat(np.array(SURNAMES), len(given)))
        offsets[gender] = sum(len(block) for block in blocks)
        blocks.append(pc.binary_join_element_wise(surnames, pa.array(given * len(SURNAMES)), ""))
    return pa.concat_arrays(blocks), offsets, given_per_surname


def max_consumers() -> int:
    """The largest population whose ID numbers can all be distinct."""
    return geography().districts * SEQUENCES_PER_DAY * len(birth_days())


class Population:
    """Consumers 0..n-1 of one seed. `columns(ids, names)` computes the named attributes for a batch of ids."""

    def __init__(self, seed: int):
        self.seed = seed
        self.permutation = PairPermutation(
            seed, "consumer.identity", geography().districts * SEQUENCES_PER_DAY, len(birth_days())
        )
        self.phone_permutation = PairPermutation(seed, "consumer.phone_number", _PHONE_HALF, _PHONE_HALF)

    def identity(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(district, sequence number, birth day index) of each consumer, distinct across consumers."""
        district_and_sequence, birth_day = self.permutation(ids)
        return district_and_sequence // SEQUENCES_PER_DAY, district_and_sequence % SEQUENCES_PER_DAY, birth_day

    def columns(self, ids: np.ndarray, names: Iterable[str] = CONSUMER_COLUMNS) -> dict[str, pa.Array]:
        geo, births = geography(), birth_days()
        district, sequence, birth_day = self.identity(ids)
        male = (sequence % 2).astype(np.int64)  # odd sequence numbers are men
        city = np.take(geo.district_city, district)
        builders = {
            "id_number": lambda: self._id_numbers(district, sequence, birth_day),
            "name": lambda: self._names(ids, male),
            "phone": lambda: self._phones(ids),
            "birth_date": lambda: dates(birth_day + births.first),
            "gender": lambda: lookup(_GENDERS, male),
            "province": lambda: lookup(geo.city_provinces, city),
            "city": lambda: lookup(geo.city_names, city),
            "income_band": lambda: self._income_bands(ids, city),
        }
        return {name: builders[name]() for name in names}

    def _id_numbers(self, district: np.ndarray, sequence: np.ndarray, birth_day: np.ndarray) -> pa.Array:
        geo, births = geography(), birth_days()
        sequence_ascii, sequence_checksum = _sequence_tables()
        codes = np.empty((len(district), 18), dtype=np.uint8)
        codes[:, 0:6] = np.take(geo.district_ascii, district, axis=0)
        codes[:, 6:14] = np.take(births.ascii, birth_day, axis=0)
        codes[:, 14:17] = np.take(sequence_ascii, sequence, axis=0)
        checksum = geo.district_checksum[district] + births.checksum[birth_day] + sequence_checksum[sequence]
        codes[:, 17] = np.take(CHECK_CHAR_CODES, checksum % 11)
        return fixed_width_strings(codes)

    def _names(self, ids: np.ndarray, male: np.ndarray) -> pa.Array:
        names, offsets, given_per_surname = name_table()
        chars = len(GIVEN_NAME_CHARS["M"])
        lanes = hash_lanes(self.seed, "consumer.name", ids)
        surname = _SURNAME_CHOICE.pick_slots(lanes[:, 0])
        first, second = scale_lane(lanes[:, 1], chars), scale_lane(lanes[:, 2], chars)
        two_chars = lanes[:, 3] < int(TWO_CHAR_GIVEN_NAME_SHARE * 65_536)
        given = np.where(two_chars, chars + first * chars + second, first)
        block_offset = np.where(male == 1, offsets["M"], offsets["F"])
        return lookup(names, block_offset + surname * given_per_surname + given)

    def _phones(self, ids: np.ndarray) -> pa.Array:
        prefix = _PHONE_PREFIX_CHOICE.pick_slots(hash_lanes(self.seed, "consumer.phone_prefix", ids)[:, 0])
        codes = np.empty((len(ids), 11), dtype=np.uint8)
        codes[:, 0:3] = np.take(_PHONE_PREFIX_ASCII, prefix, axis=0)
        # A bijection of the id onto the 8 subscriber digits: no two consumers (below 10^8) share a number.
        high, low = self.phone_permutation(ids % _PHONE_SUBSCRIBERS)
        codes[:, 3:11] = ascii_digits(high * _PHONE_HALF + low, 8)
        return fixed_width_strings(codes)

    def _income_bands(self, ids: np.ndarray, city: np.ndarray) -> pa.Array:
        return lookup(_INCOME_BANDS, self.income_band_indices(ids, city))

    def income_band_indices(self, ids: np.ndarray, city: np.ndarray | None = None) -> np.ndarray:
        """Index into INCOME_BANDS (0 = lowest) of each consumer; richer in higher-tier cities."""
        if city is None:
            district, _, _ = self.identity(ids)
            city = np.take(geography().district_city, district)
        tier = np.take(geography().city_tiers, city)
        return _INCOME_BAND_CHOICE.pick(hash_uniform(self.seed, "consumer.income", ids), tier)

    def birth_days_since_epoch(self, ids: np.ndarray) -> np.ndarray:
        _, _, birth_day = self.identity(ids)
        return birth_day + birth_days().first

    def credit_risk(self, ids: np.ndarray) -> np.ndarray:
        """A hidden propensity to repay late, in [0, 1): most consumers are near 0. Loans and credit
        profiles of the same seed both follow it, so scores and repayment behaviour agree."""
        return hash_uniform(self.seed, "consumer.credit_risk", ids) ** 1.5


_GENDERS = string_table(["F", "M"])
_INCOME_BANDS = string_table(INCOME_BANDS)
# Rows are city tiers 0..3 (0 unused, so the tier indexes the row directly).
_INCOME_BAND_CHOICE = WeightedChoice([INCOME_BAND_SHARES_BY_TIER[max(tier, 1)] for tier in range(4)])
_SURNAME_CHOICE = WeightedChoice(1.0 / (np.arange(len(SURNAMES)) + 8.0))  # frequency falls off with rank
_PHONE_HALF = 10_000
_PHONE_SUBSCRIBERS = _PHONE_HALF * _PHONE_HALF
_PHONE_PREFIX_ASCII = np.array([[ord(c) for c in prefix] for prefix, _ in PHONE_PREFIXES], dtype=np.uint8)
_PHONE_PREFIX_CHOICE = WeightedChoice([weight for _, weight in PHONE_PREFIXES])
