"""The access generation row and the triggers that change it (vitamin.access_generation)."""

import secrets

from django.conf import settings
from django.db import migrations, models

from vitamin import access_generation as generation


def create_row_and_triggers(apps, schema_editor):
    # A random start: a row made again (after a flush) never repeats a number an old cache entry holds.
    apps.get_model("access", "AccessGeneration").objects.create(id=1, value=secrets.randbits(62))
    generation.install(schema_editor.connection)


def drop_triggers(apps, schema_editor):
    generation.drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0003_lookup_grants_and_cohort_quota"),
        # Every table the triggers go on exists first.
        ("oauth", "0001_initial"),
        ("institutions", "0001_initial"),
        ("catalog", "0003_refresh_backfill_trigger"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessGeneration",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(create_row_and_triggers, drop_triggers),
    ]
