"""Human units on the usage pages: every amount reads back to itself within its rounding, and no raw large integer."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.plan_terms import Unit
from portal.templatetags.units import BYTE_UNITS, human, percent_of

SCALE = {"bytes": 1, "byte": 1} | {name: 1024 ** (power + 1) for power, name in enumerate(BYTE_UNITS)}
amounts = st.integers(min_value=0, max_value=2**62)


def read_back(text: str) -> tuple[float, int]:
    """The amount a person reads from `text`, and the size of its unit."""
    number, unit = re.fullmatch(r"([\d,]+(?:\.\d)?) (bytes|byte|KB|MB|GB|TB)", text).groups()
    return float(number.replace(",", "")) * SCALE[unit], SCALE[unit]


def no_raw_large_integer(text: str) -> bool:
    """Four digits or more always carry thousands separators."""
    return not re.search(r"\d{4}", text)


@given(amounts)
def test_bytes_read_back_within_the_rounding_of_one_decimal(amount):
    text = human(amount, Unit.BYTES)
    value, unit = read_back(text)
    assert abs(value - amount) <= 0.05 * unit + 1e-9 * amount, text
    assert no_raw_large_integer(text), text
    if amount >= 1024:
        assert value >= unit * 0.95 or unit == SCALE["KB"], f"the largest unit that keeps the number ≥ 1: {text}"


@given(amounts)
def test_counts_are_exact_with_thousands_separators(amount):
    text = human(amount, Unit.COUNT)
    assert int(text.replace(",", "")) == amount
    assert no_raw_large_integer(text), text


@given(st.integers(min_value=0, max_value=10**7))
def test_seconds_keep_their_unit(amount):
    text = human(amount, Unit.SECONDS)
    assert text.endswith(" s") and int(text[:-2].replace(",", "")) == amount and no_raw_large_integer(text)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1,023 bytes"),
        (1024, "1.0 KB"),
        (536870912000, "500.0 GB"),
        (50 * 1024**3, "50.0 GB"),
        (10**9, "953.7 MB"),
        (3 * 1024**5, "3,072.0 TB"),
    ],
)
def test_bytes_examples(amount, text):
    assert human(amount, Unit.BYTES) == text


def test_nothing_reads_as_a_dash():
    assert human(None, Unit.BYTES) == "—" and human(None) == "—"


@given(amounts, st.integers(min_value=0, max_value=2**62))
def test_a_bar_is_between_empty_and_full(used, limit):
    share = percent_of(used, limit)
    assert 0 <= share <= 100
    assert share == (0 if not limit else min(100, used * 100 // limit))
