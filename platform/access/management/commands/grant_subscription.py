"""Grant an institution access to a dataset directly, without a request (for automation)."""

from __future__ import annotations

from datetime import date, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from access import subscriptions
from access.models import QuotaPlan
from catalog.models import Dataset
from institutions.models import Institution
from vitamin.cli import add_json_flag, emit
from vitamin.refusals import Refusal


def parse_expiry(text: str) -> datetime:
    """YYYY-MM-DD (access to the end of that day, platform time) or an ISO date-time (naive: platform time)."""
    try:
        return subscriptions.expiry_from_date(date.fromisoformat(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--expires: {text!r} is neither YYYY-MM-DD nor an ISO date-time.") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Grant an institution access to a dataset (approving a pending request, or changing an approved one's terms)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--institution", required=True, help="Institution id or unified social credit code.")
        parser.add_argument("--dataset", required=True, help="Dataset slug.")
        parser.add_argument("--modes", required=True, help="Comma-separated: query, download, lookup.")
        parser.add_argument("--plan", required=True, help="Quota plan name.")
        parser.add_argument(
            "--expires",
            help=f"Last day of access (YYYY-MM-DD) or an ISO date-time. Default: {subscriptions.DEFAULT_TERM_DAYS} days from today.",
        )
        parser.add_argument("--pin-version", type=int, help="Pin this published version number.")
        parser.add_argument("--purpose", default="", help="Why (kept with the subscription).")
        add_json_flag(parser)

    def handle(self, *args, **options):
        try:
            institution = Institution.objects.get_by_reference(options["institution"])
        except (Institution.DoesNotExist, ValueError):
            raise CommandError(f"No institution {options['institution']}.") from None
        dataset = Dataset.objects.filter(slug=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset {options['dataset']} (run sync_datasets?).")
        plan = QuotaPlan.objects.filter(name=options["plan"]).first()
        if plan is None:
            known = ", ".join(QuotaPlan.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"No plan {options['plan']} (known: {known}).")
        pinned = None
        if options["pin_version"] is not None:
            pinned = dataset.versions.filter(number=options["pin_version"]).first()
            if pinned is None:
                raise CommandError(f"{dataset.slug} has no version {options['pin_version']}.")
        expires_at = parse_expiry(options["expires"]) if options["expires"] else subscriptions.default_expiry()
        modes = [mode.strip() for mode in options["modes"].split(",") if mode.strip()]
        try:
            subscription = subscriptions.grant(
                institution,
                dataset,
                modes=modes,
                plan=plan,
                expires_at=expires_at,
                pinned_version=pinned,
                purpose=options["purpose"],
            )
        except Refusal as exc:
            raise CommandError(exc.message) from None
        payload = {
            "id": subscription.pk,
            "institution": institution.pk,
            "institution_name": institution.legal_name,
            "dataset": dataset.slug,
            "status": subscription.status,
            "modes": subscription.modes,
            "plan": plan.name,
            "expires_at": subscription.expires_at.isoformat(),
            "last_day": subscription.last_day.isoformat(),
            "pinned_version": pinned.number if pinned else None,
        }
        emit(
            self,
            options,
            payload,
            f"{institution.legal_name} may use {dataset.slug} ({', '.join(subscription.modes)}) on plan {plan.name} "
            f"until {subscription.last_day:%Y-%m-%d}.",
        )
