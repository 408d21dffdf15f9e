"""The unified social credit code (统一社会信用代码) of GB 32100-2015.

Eighteen characters from a 31-character alphabet (digits and capital letters
without I, O, Z, S and V); the last one is a check character computed from
the first seventeen with weights 3^i mod 31.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
LENGTH = 18
_VALUE = {char: value for value, char in enumerate(ALPHABET)}
_WEIGHTS = [pow(3, position, 31) for position in range(LENGTH - 1)]


def check_character(first_17: str) -> str:
    """The check character that completes `first_17` (which must use the alphabet)."""
    if len(first_17) != LENGTH - 1 or any(char not in _VALUE for char in first_17):
        raise ValueError("expected 17 characters from the credit code alphabet")
    weighted_sum = sum(_VALUE[char] * weight for char, weight in zip(first_17, _WEIGHTS, strict=True))
    check_value = 31 - weighted_sum % 31
    return ALPHABET[0 if check_value == 31 else check_value]


def is_valid_credit_code(code: str) -> bool:
    if len(code) != LENGTH or any(char not in _VALUE for char in code):
        return False
    return check_character(code[:-1]) == code[-1]


def validate_credit_code(code: str) -> None:
    """Django field validator."""
    if len(code) != LENGTH:
        raise ValidationError(_("A unified social credit code has exactly 18 characters."), code="credit_code_length")
    bad = sorted({char for char in code if char not in _VALUE})
    if bad:
        raise ValidationError(
            _(
                "A unified social credit code uses only digits and capital letters other than I, O, Z, S and V "
                "(found %(characters)s)."
            )
            % {"characters": "".join(bad)},
            code="credit_code_charset",
        )
    if not is_valid_credit_code(code):
        raise ValidationError(
            _("The check character of this unified social credit code is wrong."), code="credit_code_check"
        )
