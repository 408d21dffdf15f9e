"""GB 32100-2015 unified social credit codes: alphabet, length, check character."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from institutions.credit_code import ALPHABET, check_character, is_valid_credit_code, validate_credit_code

# Valid codes from public examples of the standard.
PUBLISHED = ["91350100M000100Y43", "91110000802100433B", "914403001922038216"]


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code):
    assert is_valid_credit_code(code)
    validate_credit_code(code)


def test_the_alphabet_has_31_characters_without_i_o_z_s_v():
    assert len(ALPHABET) == 31
    assert not set("IOZSV") & set(ALPHABET)


@pytest.mark.parametrize(
    "code, problem",
    [
        ("91350100M000100Y44", "check character"),
        ("91350100M000100Y4", "18 characters"),
        ("91350100M000100Y433", "18 characters"),
        ("91350100I000100Y43", "I"),  # I looks like 1
        ("91350100O000100Y43", "O"),
        ("91350100m000100Y43", "m"),  # lower case is not in the alphabet
    ],
)
def test_bad_codes_are_refused_with_a_reason(code, problem):
    assert not is_valid_credit_code(code)
    with pytest.raises(ValidationError, match=problem):
        validate_credit_code(code)


first_17 = st.text(alphabet=ALPHABET, min_size=17, max_size=17)


@given(first_17)
def test_the_check_character_completes_any_code(base):
    assert is_valid_credit_code(base + check_character(base))


@given(first_17, st.integers(min_value=0, max_value=17), st.integers(min_value=1, max_value=30))
def test_any_single_character_change_is_detected(base, position, shift):
    """31 is prime and no weight is 0 mod 31, so every single substitution changes the check."""
    code = base + check_character(base)
    changed = code[:position] + ALPHABET[(ALPHABET.index(code[position]) + shift) % 31] + code[position + 1 :]
    assert not is_valid_credit_code(changed)
