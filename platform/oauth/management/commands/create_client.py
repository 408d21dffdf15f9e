"""Create an OAuth client for an approved institution and print its secret, once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from institutions.models import Institution
from oauth.clients import ClientConfigError, create_client
from oauth.metadata import server_metadata
from oauth.models import GrantType
from oauth.scopes import ALL_SCOPES
from vitamin.cli import add_json_flag, emit


class Command(BaseCommand):
    help = "Create an OAuth client for an institution (by id or credit code); prints the client id and secret once."

    def add_arguments(self, parser):
        parser.add_argument("institution", help="Institution id or unified social credit code.")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scope", default=" ".join(ALL_SCOPES), help="Allowed scopes, space-separated (default: all)."
        )
        parser.add_argument(
            "--grant-type", action="append", choices=GrantType.values, help="Repeatable (default: client_credentials)."
        )
        parser.add_argument("--redirect-uri", action="append", default=[], help="Repeatable; for authorization_code.")
        add_json_flag(parser)

    def handle(self, *args, **options):
        try:
            institution = Institution.objects.get_by_reference(options["institution"])
        except Institution.DoesNotExist:
            raise CommandError(f"No institution {options['institution']}.") from None
        try:
            client, secret = create_client(
                institution,
                name=options["name"],
                scope=options["scope"],
                grant_types=options["grant_type"] or [GrantType.CLIENT_CREDENTIALS],
                redirect_uris=options["redirect_uri"],
            )
        except ClientConfigError as exc:
            raise CommandError(str(exc)) from None
        token_endpoint = server_metadata(None)["token_endpoint"]
        payload = {
            "client_id": client.client_id,
            "client_secret": secret,
            "institution_id": institution.pk,
            "scope": client.scope,
            "grant_types": client.grant_types,
            "token_endpoint": token_endpoint,
        }
        emit(
            self,
            options,
            payload,
            f"client_id:     {client.client_id}\nclient_secret: {secret}\n(shown once; only its hash is stored)",
        )
