"""The embedded default's e-mail: printed, on stderr, so a command's --json output on stdout stays parseable."""

from __future__ import annotations

import sys

from django.core.mail.backends.console import EmailBackend


class ConsoleBackend(EmailBackend):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream", sys.stderr)
        super().__init__(*args, **kwargs)
