"""Connector kinds by name: the one place that maps a spec's `kind` to a class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import DEFAULT_BATCH_ROWS, Connector, OptionsError
from .csv_files import CsvConnector
from .http_json import HttpJsonConnector
from .parquet_files import ParquetConnector
from .sql import SqlConnector
from .synthetic import SyntheticConnector

CONNECTORS: dict[str, type[Connector]] = {
    connector.kind: connector
    for connector in (CsvConnector, ParquetConnector, SqlConnector, HttpJsonConnector, SyntheticConnector)
}


def get_connector(kind: str, options: Mapping[str, Any], batch_rows: int = DEFAULT_BATCH_ROWS) -> Connector:
    """A connector of `kind` with validated options; raises OptionsError listing every problem."""
    connector = CONNECTORS.get(kind)
    if connector is None:
        raise OptionsError(
            [("kind", f"unknown connector kind {kind!r}; expected one of {', '.join(sorted(CONNECTORS))}")]
        )
    if not isinstance(options, Mapping):
        raise OptionsError([("options", "must be a mapping of option names to values")])
    return connector(options, batch_rows=batch_rows)
