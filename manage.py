#!/usr/bin/env python
"""Django's command-line entry point for Vitamin."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# Appended, never prepended: platform/ must not shadow the standard library's `platform`.
for path in (ROOT, ROOT / "platform"):
    if str(path) not in sys.path:
        sys.path.append(str(path))


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vitamin.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
