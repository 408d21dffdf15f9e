"""Create a partner institution (pending, or approved with --approve)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from institutions import lifecycle
from institutions.models import Institution, InstitutionType
from vitamin.cli import add_json_flag, emit


class Command(BaseCommand):
    help = "Create a partner institution; --approve approves it at once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Legal name.")
        parser.add_argument("--type", choices=InstitutionType.values, default=InstitutionType.OTHER)
        parser.add_argument("--credit-code", required=True, help="Unified social credit code (18 characters).")
        parser.add_argument("--contact-name", default="", help="Contact person (default: the name).")
        parser.add_argument("--contact-email", required=True)
        parser.add_argument("--contact-phone", default="")
        parser.add_argument("--owner", help="Email of an existing user who becomes the owner.")
        parser.add_argument("--approve", action="store_true", help="Approve the institution right away.")
        parser.add_argument("--reason", default="Created by an administrator.", help="Reason recorded for --approve.")
        add_json_flag(parser)

    def handle(self, *args, **options):
        owner = None
        if options["owner"]:
            owner = get_user_model().objects.filter(username__iexact=options["owner"]).first()
            if owner is None:
                raise CommandError(f"No user {options['owner']}; they sign up on the portal first.")
        fields = {
            "legal_name": options["name"],
            "type": options["type"],
            "credit_code": options["credit_code"].strip().upper(),
            "contact_name": options["contact_name"] or options["name"],
            "contact_email": options["contact_email"],
            "contact_phone": options["contact_phone"],
        }
        try:
            Institution(**fields).full_clean(exclude=["applicant"])
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            ) from None
        with transaction.atomic():
            institution = lifecycle.file_application(applicant=owner, **fields)
            if options["approve"]:
                lifecycle.change_status(institution, lifecycle.S.APPROVED, reason=options["reason"])
        payload = {
            "id": institution.pk,
            "legal_name": institution.legal_name,
            "type": institution.type,
            "credit_code": institution.credit_code,
            "status": institution.status,
            "owner": owner.get_username() if owner else None,
        }
        emit(self, options, payload, f"Created {institution.legal_name} (id {institution.pk}), {institution.status}.")
