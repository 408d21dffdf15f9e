"""JSON from clients, with its nesting bounded: `loads` for views that read a body themselves,
`JSONParser`, `FormParser` and `MultiPartParser` for DRF (REST_FRAMEWORK's
DEFAULT_PARSER_CLASSES, so every API view uses them).

Python's json module recurses once per level: 100,000 `[` raise RecursionError, which no
view expects (a 500). No request body of this API nests deeper than a few levels, so anything
deeper than MAX_JSON_DEPTH is malformed: ValueError from `loads`, ParseError (400
`malformed_request`) from the parser.

A NUL character in any string of a body (or of a query string: `refuse_nul`) is refused the
same way: PostgreSQL's text cannot hold one, so a lookup with it would be a 500 there.
"""

from __future__ import annotations

import io
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


def refuse_nul(values) -> None:
    """ParseError (400 malformed_request) if any of the strings `values` contains a NUL character."""
    if any("\x00" in value for value in values if isinstance(value, str)):
        raise ParseError("The request contains a NUL character.")


def _strings(value: Any):
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def check_depth(value: Any) -> None:
    """Raise JsonTooDeep if `value` (parsed JSON) nests lists and objects deeper than MAX_JSON_DEPTH."""
    pending = [(value, 1)]
    while pending:  # iterative: the check itself must not recurse
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing documents nested deeper than MAX_JSON_DEPTH with ParseError (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.") from None
        # Both walks are skipped when the bytes rule them out, which for a large body is most of the time:
        # a document with few brackets cannot nest deeply, and in UTF-8 JSON a NUL can only be written as
        # the escape \u0000 (a raw control character in a string is a parse error already).
        utf8 = (parser_context or {}).get("encoding", "utf-8").lower().replace("-", "") in ("utf8", "ascii")
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH or not utf8:
            try:
                check_depth(data)
            except JsonTooDeep as exc:
                raise ParseError(f"JSON parse error - {exc}") from None
        if b"\\u0000" in raw or not utf8:
            refuse_nul(_strings(data))
        return data


class FormParser(parsers.FormParser):
    """DRF's form parser, refusing NUL characters."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_nul([*data.keys(), *(value for key in data for value in data.getlist(key))])
        return data


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing NUL characters in fields (files are not read here)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        data = parsed.data
        refuse_nul([*data.keys(), *(value for key in data for value in data.getlist(key))])
        return parsed
