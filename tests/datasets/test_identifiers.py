"""Identifier normalization: Python (what the lookup API applies to what a partner sends) and SQL (what the build
applies to the source) agree on every formatting of a valid identifier, and invalid ones are refused without
being repeated."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.identifiers import (
    InvalidIdentifier,
    check_character,
    check_digest,
    digest,
    digest_sql,
    normalize,
    normalize_sql,
)

DIGITS = "0123456789"


@st.composite
def resident_ids(draw) -> str:
    body = draw(st.text(DIGITS, min_size=17, max_size=17))
    return body + check_character(body)


@st.composite
def mobiles(draw) -> str:
    return "1" + draw(st.sampled_from("3456789")) + draw(st.text(DIGITS, min_size=9, max_size=9))


@st.composite
def formatted(draw, value: str, separators: str) -> str:
    """`value` with separators sprinkled between its characters and around it."""
    out = [draw(st.text(separators, max_size=2))]
    for character in value:
        out.append(character)
        out.append(draw(st.text(separators, max_size=1)))
    return "".join(out)


_con = duckdb.connect()  # one in-memory database for the module: a new one per example would dominate the time


def sql_value(expression: str, value: str) -> str:
    return _con.execute(f"SELECT {expression}", [value]).fetchone()[0]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_python_and_sql_normalize_every_formatting_of_a_resident_id_alike(data):
    canonical = data.draw(resident_ids())
    lower = canonical.lower() if data.draw(st.booleans()) else canonical
    text = data.draw(formatted(lower, " -"))
    assert normalize("resident_id", text) == canonical
    assert sql_value(normalize_sql("resident_id", "$1"), text) == canonical
    assert sql_value(digest_sql("resident_id", "$1"), text) == digest(canonical)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_python_and_sql_normalize_every_formatting_of_a_mobile_alike(data):
    canonical = data.draw(mobiles())
    prefix = data.draw(st.sampled_from(["", "86", "+86", "0086", "+86 ", "(+86) "]))
    text = prefix + data.draw(formatted(canonical, " -.()"))
    assert normalize("mobile", text) == canonical
    assert sql_value(normalize_sql("mobile", "$1"), text) == canonical
    assert sql_value(digest_sql("mobile", "$1"), text) == digest(canonical)


def test_full_width_characters_are_folded_in_python():
    canonical = "11010519491231002X"
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in canonical.lower())
    assert normalize("resident_id", full_width) == canonical


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["resident_id", "mobile"]), text=st.text(max_size=30))
def test_anything_else_is_refused_without_repeating_it(kind, text):
    try:
        value = normalize(kind, text)
    except InvalidIdentifier as exc:
        assert len(text.strip()) < 6 or text.strip() not in str(exc)
        return
    # Whatever is accepted is in the normalized form, and normalizing it again changes nothing.
    assert normalize(kind, value) == value
    assert len(value) == (18 if kind == "resident_id" else 11)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("resident_id", "11010519491231002"),  # 17 characters
        ("resident_id", "110105194912310021"),  # wrong check character
        ("resident_id", "11010519491231002Y"),
        ("mobile", "2380013800"),
        ("mobile", "23800138000"),
        ("mobile", "1380013800a"),
        ("mobile", "+1 138 0013 8000"),
    ],
)
def test_known_invalid_identifiers(kind, text):
    with pytest.raises(InvalidIdentifier):
        normalize(kind, text)


def test_a_digest_is_64_hex_digits_in_either_case():
    value = digest("13800138000")
    assert check_digest(value.upper()) == value
    for bad in ("", "abc", value[:-1], value + "0", "g" * 64, None, 12):
        with pytest.raises(InvalidIdentifier):
            check_digest(bad)
