"""Subscribe the demo partners to the demo datasets (idempotent; `bootstrap` runs it after sync_datasets)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from access.demo import create_demo_subscriptions
from vitamin.cli import add_json_flag, emit


class Command(BaseCommand):
    help = "Create the demo plan and subscribe the demo fund company and bank to the demo datasets."

    def add_arguments(self, parser):
        add_json_flag(parser)

    def handle(self, *args, **options):
        results = create_demo_subscriptions()
        text = "\n".join(f"  {line['institution']} → {line['dataset']}: {line['outcome']}" for line in results)
        emit(self, options, {"subscriptions": results}, text)
