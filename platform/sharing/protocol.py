"""The Delta Sharing protocol's shapes (delta-io/delta-sharing, PROTOCOL.md), as plain data.

Vitamin's mapping: each institution sees one share, `vitamin`, holding the datasets it is
granted in mode `download`; a schema per dataset theme; a table per dataset; a table version is
a published dataset version. Answers are in the `parquet` response format.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pyarrow as pa

SHARE = "vitamin"
DEFAULT_SCHEMA = "general"  # the schema of a dataset without a theme
CAPABILITIES_HEADER = "delta-sharing-capabilities"
VERSION_HEADER = "Delta-Table-Version"
NDJSON = "application/x-ndjson; charset=utf-8"
_NAMESPACE = uuid.UUID("6c3f1e0a-5b7d-4c1e-9a51-2f0e8d7c4b19")


def share_id(institution_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"share:{institution_id}"))


def table_id(slug: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"table:{slug}"))


def schema_name(theme: str) -> str:
    """A theme as a schema name a table URL can carry: "industry indicators" → "industry_indicators"."""
    name = re.sub(r"[^a-z0-9]+", "_", (theme or "").lower()).strip("_")
    return name or DEFAULT_SCHEMA


def spark_type(arrow_type: pa.DataType) -> Any:
    """The Delta (Spark) type of an Arrow type, as it goes into `schemaString`."""
    types = pa.types
    simple = [
        (types.is_boolean, "boolean"),
        (types.is_int8, "byte"),
        (types.is_int16, "short"),
        (types.is_int32, "integer"),
        (types.is_int64, "long"),
        (types.is_uint8, "short"),
        (types.is_uint16, "integer"),
        (types.is_uint32, "long"),
        (types.is_uint64, "long"),
        (types.is_float16, "float"),
        (types.is_float32, "float"),
        (types.is_float64, "double"),
        (types.is_string, "string"),
        (types.is_large_string, "string"),
        (types.is_binary, "binary"),
        (types.is_large_binary, "binary"),
        (types.is_date, "date"),
    ]
    for test, name in simple:
        if test(arrow_type):
            return name
    if types.is_timestamp(arrow_type):
        return "timestamp" if arrow_type.tz else "timestamp_ntz"
    if types.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if types.is_list(arrow_type) or types.is_large_list(arrow_type):
        return {"type": "array", "elementType": spark_type(arrow_type.value_type), "containsNull": True}
    if types.is_struct(arrow_type):
        return {"type": "struct", "fields": [_field(arrow_type.field(i)) for i in range(arrow_type.num_fields)]}
    if types.is_map(arrow_type):
        return {
            "type": "map",
            "keyType": spark_type(arrow_type.key_type),
            "valueType": spark_type(arrow_type.item_type),
            "valueContainsNull": True,
        }
    return "string"  # anything else is read as text by every client


def _field(field: pa.Field) -> dict:
    return {"name": field.name, "type": spark_type(field.type), "nullable": True, "metadata": {}}


def schema_string(schema: pa.Schema) -> str:
    return json.dumps({"type": "struct", "fields": [_field(field) for field in schema]})


def protocol_line() -> dict:
    return {"protocol": {"minReaderVersion": 1}}


def metadata_line(
    *, table: str, name: str, description: str, schema: pa.Schema, partition_columns: list[str], size: int, files: int
) -> dict:
    return {
        "metaData": {
            "id": table,
            "name": name,
            "description": description,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string(schema),
            "partitionColumns": partition_columns,
            "configuration": {},
            "size": size,
            "numFiles": files,
        }
    }


def file_line(*, url: str, file_id: str, partition_values: dict, size: int, rows: int, expires_at_ms: int) -> dict:
    return {
        "file": {
            "url": url,
            "id": file_id,
            "partitionValues": partition_values,
            "size": size,
            "stats": json.dumps({"numRecords": rows}),
            "expirationTimestamp": expires_at_ms,
        }
    }


def ndjson(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
