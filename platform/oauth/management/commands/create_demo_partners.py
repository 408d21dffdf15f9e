"""Create two approved demo partners with API clients; write their credentials to <DATA_DIR>/demo-credentials.json."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from oauth.demo import create_demo_partners
from vitamin.cli import add_json_flag, emit


class Command(BaseCommand):
    help = "Create (or reuse) two approved demo partners and write their client credentials to the data directory."

    def add_arguments(self, parser):
        add_json_flag(parser)

    def handle(self, *args, **options):
        path = create_demo_partners(settings.DATA_DIR)
        emit(self, options, {"credentials_file": str(path)}, f"Demo partner credentials: {path}")
