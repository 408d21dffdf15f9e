"""Output of the admin commands: readable text, or one JSON object with --json (for scripts)."""

from __future__ import annotations

import json


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")


def emit(command, options: dict, payload: dict, text: str) -> None:
    command.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) if options["json"] else text)
