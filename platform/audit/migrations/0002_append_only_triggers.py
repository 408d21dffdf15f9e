"""Database triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the audit table."""

from django.db import migrations

from audit import triggers


def install_triggers(apps, schema_editor):
    triggers.install(schema_editor.connection)


def drop_triggers(apps, schema_editor):
    triggers.drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(install_triggers, drop_triggers),
    ]
