"""PostgreSQL: the function that takes the audit chain's lock and reads its head in one round trip."""

from django.db import migrations

from audit import chain_lock


def install(apps, schema_editor):
    chain_lock.install(schema_editor.connection)


def drop(apps, schema_editor):
    chain_lock.drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only_triggers"),
    ]

    operations = [
        migrations.RunPython(install, drop),
    ]
