"""JSON from clients, with its nesting bounded: `loads` for views that read a body themselves,
`JSONParser` for DRF (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES, so every API view uses it).

Python's json module recurses once per level: 100,000 `[` raise RecursionError, which no
view expects (a 500). No request body of this API nests deeper than a few levels, so anything
deeper than MAX_JSON_DEPTH is malformed: ValueError from `loads`, ParseError (400
`malformed_request`) from the parser.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 32


class JsonTooDeep(ValueError):
    pass


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """`json.loads`, raising JsonTooDeep (a ValueError) for a document nested deeper than MAX_JSON_DEPTH."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from None
    check_depth(value)
    return value


def check_depth(value: Any) -> None:
    """Raise JsonTooDeep if `value` (parsed JSON) nests lists and objects deeper than MAX_JSON_DEPTH."""
    pending = [(value, 1)]
    while pending:  # iterative: the check itself must not recurse
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing documents nested deeper than MAX_JSON_DEPTH with ParseError (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.") from None
        try:
            check_depth(data)
        except JsonTooDeep as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return data
