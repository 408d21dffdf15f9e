"""Vitamin's source connectors: each streams Arrow record batches from one kind of source. Plain Python: no Django.

Use `get_connector(kind, options)` and iterate its `batches()`; docs/connectors.md describes every kind.
"""

from .base import DEFAULT_BATCH_ROWS, Connector, ConnectorError, Option, OptionsError, resolve_secret
from .registry import CONNECTORS, get_connector

__all__ = [
    "CONNECTORS",
    "DEFAULT_BATCH_ROWS",
    "Connector",
    "ConnectorError",
    "Option",
    "OptionsError",
    "get_connector",
    "resolve_secret",
]
