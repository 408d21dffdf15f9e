"""Django's `migrate`, after adopting a database from before this app's rename (`access.legacy`)."""

from django.core.management.commands.migrate import Command as DjangoMigrate

from access.legacy import adopt_grants_label


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        adopt_grants_label(options["database"])
        return super().handle(*args, **options)
