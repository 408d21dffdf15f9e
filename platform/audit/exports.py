"""Audit events as export lines, streamed: JSON Lines (the format `verify_audit --input` checks) and CSV.

`manage.py export_audit` and the staff search page's exports write the same JSON lines: each the
event's canonical record with `hash`, so dropping `hash` and SHA-256-ing the rest checks one line.
Both take an iterator of events and yield one line at a time: nothing holds the whole log.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from audit.chain import HASHED_FIELDS, canonical_json
from audit.models import AuditEvent

CSV_COLUMNS = (*HASHED_FIELDS, "hash")


def jsonl_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield canonical_json(event.to_record()) + "\n"


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """A header, then one row per event; `details` is its canonical JSON text, exactly as hashed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for event in events:
        record = event.to_record()
        record["details"] = canonical_json(record["details"])
        yield line(record[name] for name in CSV_COLUMNS)
