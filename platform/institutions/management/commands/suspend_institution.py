"""Suspend an institution: every client stops and every token is revoked at once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from institutions import lifecycle
from institutions.models import Institution
from vitamin.cli import add_json_flag, emit


class Command(BaseCommand):
    help = "Suspend an institution (by id or credit code); its clients stop and its tokens are revoked."

    def add_arguments(self, parser):
        parser.add_argument("institution", help="Institution id or unified social credit code.")
        parser.add_argument("--reason", required=True, help="Why (kept in the status history and the audit log).")
        add_json_flag(parser)

    def handle(self, *args, **options):
        try:
            institution = Institution.objects.get_by_reference(options["institution"])
        except Institution.DoesNotExist:
            raise CommandError(f"No institution {options['institution']}.") from None
        try:
            lifecycle.change_status(institution, lifecycle.S.SUSPENDED, reason=options["reason"])
        except lifecycle.StatusChangeError as exc:
            raise CommandError(str(exc)) from None
        payload = {"id": institution.pk, "legal_name": institution.legal_name, "status": institution.status}
        emit(self, options, payload, f"Suspended {institution.legal_name}.")
