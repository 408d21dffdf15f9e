"""Build the first version of every dataset that has none, in this process (used by `make run`)."""

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Build, in this process, every active dataset that has no published version yet."

    def handle(self, *args, **options):
        call_command("refresh_dataset", "--missing", "--now", stdout=self.stdout, stderr=self.stderr)
