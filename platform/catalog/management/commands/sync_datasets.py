"""Sync dataset spec files into the catalog."""

import json

from django.core.management.base import BaseCommand, CommandError

from catalog.sync import load_catalog_specs, sync_datasets
from datasets.spec import SpecError


class Command(BaseCommand):
    help = "Load and validate every dataset spec, then create/update the catalog's Dataset rows."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, json: bool = False, **options):
        try:
            specs = load_catalog_specs()
        except SpecError as exc:
            raise CommandError("dataset specs are invalid:\n" + "\n".join(f"  {p}" for p in exc.problems)) from None
        report = sync_datasets(specs)
        if json:
            self.stdout.write(_json_dumps(report.to_dict()))
            return
        for label, slugs in report.to_dict().items():
            if slugs:
                self.stdout.write(f"  {label}: {', '.join(slugs)}")


def _json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)
