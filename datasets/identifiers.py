"""Customer identifiers a lookup matches on: one normalized form each, in Python and in SQL.

A lookup dataset's key columns are keyed pseudonyms of the SHA-256 of a normalized identifier:

    normalized = normalize(kind, raw)                        e.g. "11010519491231002X", "13800138000"
    digest     = hex(SHA-256(UTF-8 of normalized))           what a partner may send instead of the identifier
    pseudonym  = datasets.anonymize.PseudonymKey.pseudonym(digest)

The build computes `digest` in DuckDB (`digest_sql`) from the source column; the lookup
API computes it in Python (`digest`) from what a partner sent, or takes the partner's
own SHA-256. The two normalizations must agree on every input the build can meet:
tests/datasets/test_identifiers.py checks that with Hypothesis.

Normalized forms (docs/lookup.md repeats them for integrators):

- resident_id: the 18-character PRC resident identity number, 17 digits and a check
  character (a digit or an upper-case X) that is valid under ISO 7064 MOD 11-2.
  Spaces and hyphens are removed and a lower-case x is upper-cased.
- mobile: the 11-digit mainland mobile number, starting with 1, without a country code.
  Spaces, hyphens, dots and brackets are removed; a leading +86, 0086 or 86 is dropped.

Python also folds full-width characters (NFKC) before that, as forms typed on Chinese
keyboards carry them; a value that is still not in the normalized form is refused.
"""

from __future__ import annotations

import hashlib
import operator
import re
import unicodedata
from enum import StrEnum


class IdentifierKind(StrEnum):
    RESIDENT_ID = "resident_id"
    MOBILE = "mobile"


IDENTIFIER_KINDS: tuple[str, ...] = tuple(kind.value for kind in IdentifierKind)
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARACTERS = "10X98765432"
_ASCII_OFFSET = 48 * sum(ID_WEIGHTS)
_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_MOBILE_TEXT = re.compile(r"[0-9+\-.() ]+")
_REMOVED = re.compile(r"[\s\-]")
_COUNTRY_PREFIXES = ("0086", "86")


class InvalidIdentifier(ValueError):
    """The value is not an identifier of its kind. The message never repeats the value."""


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits."""
    # On the ASCII codes: each digit is off by 48, and 48 * sum(weights) is a constant (a batch checks 10,000).
    codes = first17.encode("ascii")
    return ID_CHECK_CHARACTERS[(sum(map(operator.mul, codes, ID_WEIGHTS)) - _ASCII_OFFSET) % 11]


def normalize(kind: str, raw: str) -> str:
    """The normalized form of `raw` as an identifier of `kind`, or InvalidIdentifier."""
    if not isinstance(raw, str):
        raise InvalidIdentifier("The identifier must be a string.")
    text = unicodedata.normalize("NFKC", raw)
    if kind == IdentifierKind.RESIDENT_ID:
        value = _REMOVED.sub("", text).upper()
        if not _RESIDENT_ID.fullmatch(value) or check_character(value[:17]) != value[17]:
            raise InvalidIdentifier(
                "This is not a resident ID number: 17 digits and a check character (0-9 or X) that matches them."
            )
        return value
    if kind == IdentifierKind.MOBILE:
        if not _MOBILE_TEXT.fullmatch(text):
            raise InvalidIdentifier("This is not a mobile number: only digits, spaces, +, -, . and brackets.")
        value = _strip_country_code(re.sub(r"[^0-9]", "", text))
        if not _MOBILE.fullmatch(value):
            raise InvalidIdentifier("This is not a mainland mobile number: 11 digits starting with 1.")
        return value
    raise ValueError(f"unknown identifier kind {kind!r}; known: {', '.join(IDENTIFIER_KINDS)}")


def _strip_country_code(digits: str) -> str:
    for prefix in _COUNTRY_PREFIXES:
        if len(digits) == 11 + len(prefix) and digits.startswith(prefix + "1"):
            return digits[len(prefix) :]
    return digits


def digest(normalized: str) -> str:
    """The SHA-256 (lower-case hex) of a normalized identifier: what the pseudonym is computed from."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def check_digest(value: str) -> str:
    """A partner's SHA-256 of a normalized identifier, lower-cased; InvalidIdentifier when it is not 64 hex digits."""
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value.lower()):
        raise InvalidIdentifier("A SHA-256 digest is 64 hexadecimal digits.")
    return value.lower()


def normalize_sql(kind: str, value_sql: str) -> str:
    """DuckDB SQL normalizing `value_sql` (text) the way `normalize` does for well-formed ASCII input."""
    text = f"CAST({value_sql} AS VARCHAR)"
    if kind == IdentifierKind.RESIDENT_ID:
        return f"upper(regexp_replace({text}, '[\\s\\-]', '', 'g'))"
    if kind == IdentifierKind.MOBILE:
        digits = f"regexp_replace({text}, '[^0-9]', '', 'g')"
        cases = " ".join(
            f"WHEN length({digits}) = {11 + len(prefix)} AND starts_with({digits}, '{prefix}1')"
            f" THEN substr({digits}, {len(prefix) + 1})"
            for prefix in _COUNTRY_PREFIXES
        )
        return f"(CASE {cases} ELSE {digits} END)"
    raise ValueError(f"unknown identifier kind {kind!r}; known: {', '.join(IDENTIFIER_KINDS)}")


def digest_sql(kind: str, value_sql: str) -> str:
    """DuckDB SQL for `digest(normalize(kind, value))`; NULL stays NULL."""
    return f"sha256({normalize_sql(kind, value_sql)})"
