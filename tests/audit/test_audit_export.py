"""export_audit: JSON lines and Parquet, time windows, and exports that verify on their own."""

from __future__ import annotations

import json
from datetime import UTC
from io import StringIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import format_timestamp, verify_chain
from audit.models import AuditEvent


def export_jsonl(*arguments: str) -> list[dict]:
    stdout = StringIO()
    call_command("export_audit", *arguments, stdout=stdout)
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def window(events: list[AuditEvent], first: int, stop: int | None = None) -> list[int]:
    """The seqs whose timestamps fall in [events[first].timestamp, events[stop].timestamp)."""
    since = events[first].timestamp
    return [
        event.seq
        for event in events
        if since <= event.timestamp and (stop is None or event.timestamp < events[stop].timestamp)
    ]


@pytest.mark.django_db
def test_jsonl_export_is_every_event_with_its_chain_fields(make_chain):
    make_chain(5)

    records = export_jsonl()

    assert records == [event.to_record() for event in AuditEvent.objects.order_by("seq")]
    assert {"seq", "hash", "prev_hash"} <= records[0].keys()
    assert verify_chain(records).ok


@pytest.mark.django_db
def test_jsonl_export_honours_since_and_until(make_chain):
    events = make_chain(8)
    expected = window(events, 2, 6)
    shanghai = ZoneInfo("Asia/Shanghai")

    with_offsets = export_jsonl(
        "--since",
        events[2].timestamp.astimezone(shanghai).isoformat(),
        "--until",
        events[6].timestamp.astimezone(shanghai).isoformat(),
    )
    naive_means_utc = export_jsonl(
        "--since", events[2].timestamp.astimezone(UTC).replace(tzinfo=None).isoformat(), "--format", "jsonl"
    )

    assert [record["seq"] for record in with_offsets] == expected
    assert 3 in expected and 8 not in expected
    assert [record["seq"] for record in naive_means_utc] == window(events, 2)
    assert verify_chain(with_offsets, partial=True).ok


@pytest.mark.django_db
def test_parquet_export_round_trips_and_verifies(make_chain, tmp_path: Path):
    events = make_chain(7)
    output = tmp_path / "audit.parquet"
    stdout = StringIO()

    call_command(
        "export_audit",
        "--format",
        "parquet",
        "--output",
        str(output),
        "--since",
        events[1].timestamp.isoformat(),
        "--until",
        events[5].timestamp.isoformat(),
        "--chunk-size",
        "2",
        stdout=stdout,
    )

    rows = pq.read_table(output).to_pylist()
    records = [
        {**row, "timestamp": format_timestamp(row["timestamp"]), "details": json.loads(row["details"])} for row in rows
    ]
    expected = window(events, 1, 5)
    assert [record["seq"] for record in records] == expected
    assert records == [event.to_record() for event in AuditEvent.objects.filter(seq__in=expected).order_by("seq")]
    assert verify_chain(records, partial=True).ok
    assert f"Exported {len(expected)} audit events" in stdout.getvalue()


@pytest.mark.django_db
def test_jsonl_export_to_a_file(make_chain, tmp_path: Path):
    make_chain(3)
    output = tmp_path / "audit.jsonl"

    call_command("export_audit", "--output", str(output), stdout=StringIO())

    lines = output.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert "第1次" in lines[0]  # UTF-8 text, not \\u escapes


@pytest.mark.django_db
def test_parquet_needs_an_output_file_and_times_must_parse():
    with pytest.raises(CommandError, match="--output"):
        call_command("export_audit", "--format", "parquet", stdout=StringIO())
    with pytest.raises(CommandError, match="--since"):
        call_command("export_audit", "--since", "last tuesday", stdout=StringIO())
