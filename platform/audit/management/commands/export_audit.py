"""`manage.py export_audit`: stream audit events to JSON lines or Parquet, chain fields included."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain import canonical_json
from audit.exports import jsonl_lines
from audit.models import AuditEvent
from audit.search import parse_time

# One column per record field. `details` is the canonical JSON text, exactly as hashed.
PARQUET_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("actor_type", pa.string()),
        ("actor_id", pa.string()),
        ("institution", pa.string()),
        ("action", pa.string()),
        ("target", pa.string()),
        ("outcome", pa.string()),
        ("details", pa.string()),
        ("ip", pa.string()),
        ("request_id", pa.string()),
        ("prev_hash", pa.string()),
        ("hash", pa.string()),
    ]
)


class Command(BaseCommand):
    help = (
        "Export audit events in seq order, each with seq, hash and prev_hash so the export can be verified "
        "(verify_audit --input for JSONL). Streams: memory use does not grow with the log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", metavar="ISO", help="Only events at or after this time (ISO-8601; UTC if no offset)."
        )
        parser.add_argument("--until", metavar="ISO", help="Only events before this time (ISO-8601; UTC if no offset).")
        parser.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
        parser.add_argument("--output", metavar="FILE", help="Write here instead of stdout (required for parquet).")
        parser.add_argument("--chunk-size", type=int, default=2000, help="Rows fetched and written per batch.")

    def handle(self, *args: Any, **options: Any) -> None:
        events = AuditEvent.objects.order_by("seq")
        if options["since"]:
            events = events.filter(timestamp__gte=_parse_time("--since", options["since"]))
        if options["until"]:
            events = events.filter(timestamp__lt=_parse_time("--until", options["until"]))
        stream = events.iterator(chunk_size=options["chunk_size"])

        if options["format"] == "parquet":
            if not options["output"]:
                raise CommandError("--format parquet needs --output FILE")
            count = _write_parquet(stream, options["output"], options["chunk_size"])
        elif options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="\n") as output:
                count = _write_jsonl(stream, output)
        else:
            count = _write_jsonl(stream, self.stdout)
        if options["output"]:
            self.stdout.write(f"Exported {count} audit events to {options['output']}")


def _parse_time(option: str, text: str) -> datetime:
    try:
        return parse_time(option, text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _write_jsonl(events: Iterable[AuditEvent], output: TextIO) -> int:
    count = 0
    for line in jsonl_lines(events):
        output.write(line)
        count += 1
    return count


def _parquet_rows(events: Iterable[AuditEvent]) -> Iterator[dict[str, Any]]:
    for event in events:
        yield {**event.to_record(), "timestamp": event.timestamp, "details": canonical_json(event.details)}


def _write_parquet(events: Iterable[AuditEvent], path: str, rows_per_batch: int) -> int:
    count = 0
    rows = _parquet_rows(events)
    with pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd") as writer:
        while batch := list(islice(rows, rows_per_batch)):
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=PARQUET_SCHEMA))
            count += len(batch)
    return count
