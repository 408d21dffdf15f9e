"""Write demo-customers.json into the data directory (`bootstrap` runs it after the first dataset builds)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from lookups.demo import DemoCustomersError, demo_customers
from vitamin.cli import add_json_flag, emit
from vitamin.management.commands.bootstrap import write_private_json


class Command(BaseCommand):
    help = "Write consented demo customers of the demo bank (matched and unknown) to DATA_DIR/demo-customers.json."

    def add_arguments(self, parser):
        add_json_flag(parser)
        parser.add_argument("--count", type=int, default=300, help="Customers to list (default 300).")

    def handle(self, *args, count: int, **options):
        try:
            document = demo_customers(count)
        except DemoCustomersError as exc:
            raise CommandError(str(exc)) from None
        path = settings.DATA_DIR / "demo-customers.json"
        write_private_json(path, document)
        matched = sum(1 for entry in document["customers"] if entry["expected"]["status"] == "matched")
        summary = {
            "path": str(path),
            "version": document["version"],
            "customers": len(document["customers"]),
            "matched": matched,
            "strangers": len(document["strangers"]),
        }
        text = (
            f"  {path}: {len(document['customers'])} consented customers ({matched} in credit_profiles "
            f"v{document['version']}), {len(document['strangers'])} unknown identifiers"
        )
        emit(self, options, summary, text)
