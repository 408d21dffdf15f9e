"""Print a working Delta Sharing profile for a client, as JSON on stdout (its secret part is shown once)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from oauth.models import Client
from sharing.profiles import ProfileError, profile


class Command(BaseCommand):
    help = "Print a Delta Sharing profile (JSON) for a client: --version 1 issues a long-lived bearer token; 2 rotates the client's secret."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version is the profile's, as the Delta Sharing docs call it, not Django's own --version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--client", required=True, help="The client id (vtc_...).")
        parser.add_argument("--version", type=int, choices=(1, 2), default=1)

    def handle(self, *args, **options):
        client = Client.objects.select_related("institution").filter(client_id=options["client"]).first()
        if client is None:
            raise CommandError(f"No client {options['client']!r}.")
        try:
            document = profile(client, version=options["version"])
        except ProfileError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(document, indent=2))
