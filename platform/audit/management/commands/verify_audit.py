"""`manage.py verify_audit`: check the audit hash chain, from the database or from a JSONL export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router

from audit import triggers
from audit.chain import HASHED_FIELDS
from audit.models import AuditEvent
from audit.service import ChainHead, ChainVerification, verify_chain, verify_log

_RECORD_KEYS = {*HASHED_FIELDS, "hash"}


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain. Exits 0 when intact; otherwise exits 1 and names the first bad "
        "sequence number and why (edited, deleted, inserted or reordered). Deleting the newest events is "
        "only detectable with --expect-head, an anchor recorded earlier."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expect-head",
            metavar="SEQ:HASH",
            help="An anchor printed by an earlier run: that event must still be in the chain, unchanged.",
        )
        parser.add_argument(
            "--input", metavar="FILE", help="Verify a JSONL file from export_audit instead of the database."
        )
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
        parser.add_argument("--chunk-size", type=int, default=2000, help="Rows fetched per database round trip.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            expect_head = ChainHead.parse(options["expect_head"]) if options["expect_head"] else None
        except ValueError as exc:
            raise CommandError(f"--expect-head: {exc}") from None

        if options["input"]:
            result = verify_chain(_read_jsonl(Path(options["input"])), expect_head=expect_head, partial=True)
            triggers_installed = None
        else:
            result = verify_log(expect_head=expect_head, chunk_size=options["chunk_size"])
            triggers_installed = triggers.installed(connections[router.db_for_read(AuditEvent)])

        if options["json"]:
            self.stdout.write(json.dumps({**result.as_dict(), "triggers_installed": triggers_installed}))
        else:
            self.stdout.write(_summary(result))
            if triggers_installed is False:
                self.stderr.write("WARNING: the append-only triggers are missing from the audit table.")
        if not result.ok:
            raise CommandError(f"audit chain broken at seq {result.bad_seq} ({result.problem}): {result.message}")


def _summary(result: ChainVerification) -> str:
    if result.ok and result.head_seq == 0:
        return "Audit log is empty."
    if result.ok:
        return f"Audit chain intact: {result.events_checked} events. Anchor for --expect-head: {result.head}"
    return (
        f"Audit chain BROKEN at seq {result.bad_seq} ({result.problem}): {result.message}. "
        f"{result.events_checked} events before it are intact."
    )


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CommandError(f"{path}:{number}: not JSON: {exc}") from None
                if not isinstance(record, dict) or not _RECORD_KEYS <= record.keys() or type(record["seq"]) is not int:
                    raise CommandError(f"{path}:{number}: not an audit record")
                yield record
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
