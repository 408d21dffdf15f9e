import secrets

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Subscriptions and access"

    def ready(self) -> None:
        from access.service import pinned_version_numbers
        from catalog.refresh import register_pin_provider

        # Retention keeps the files of versions that live subscriptions are pinned to.
        register_pin_provider(pinned_version_numbers)
        post_migrate.connect(_restore_access_generation, sender=self)


def _restore_access_generation(sender, using, **kwargs) -> None:
    """After every `migrate` (and `flush`): the access generation's triggers and row are in place.

    SQLite drops a table's triggers when a migration rebuilds the table, and a flush empties the
    generation table; either would only turn the access cache off (vitamin.access_generation), but here it
    stays on, and correct, whatever migrations come later.
    """
    from django.db import connections

    from access.models import AccessGeneration
    from vitamin import access_generation as generation

    connection = connections[using]
    if AccessGeneration._meta.db_table not in connection.introspection.table_names():
        return  # migrated backwards past it
    generation.install(connection)
    if not AccessGeneration.objects.using(using).filter(id=1).exists():
        AccessGeneration.objects.using(using).create(id=1, value=secrets.randbits(62))
    generation.forget_verification()
