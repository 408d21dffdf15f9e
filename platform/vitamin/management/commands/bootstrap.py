"""Prepare a data directory for `make run`: admin account and the demo content.

Idempotent: a second run reuses what the first created (the admin password is
printed only when the account is created).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError

# Demo steps, in order; each is a management command (with its arguments) that is idempotent.
# A step whose command does not exist (yet) is skipped, so bootstrap grows with the apps. A step that
# is not essential reports its failure and lets the demo go on.
DEMO_STEPS = [
    ("create_demo_partners", "demo partner institutions and their OAuth clients", True),
    ("sync_datasets", "dataset specs synced into the catalog", True),
    # Very small demo sizes (VITAMIN_DEMO_TRANSACTIONS) can leave a month with no company past k: that
    # month is then missing from the history, and as-of reads resolve to the month before.
    ("backfill_dataset --missing", "monthly history of the datasets that have one, for as-of reads", False),
    ("build_demo_datasets", "first versions of the demo datasets", True),
    ("create_demo_subscriptions", "demo subscriptions", True),
    ("create_demo_customers", "consented demo customers of the demo bank (demo-customers.json)", True),
]


def write_private_json(path: Path, payload: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


class Command(BaseCommand):
    help = "Create the admin account (once) and load the demo content into this data directory."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Only create the admin account.")

    def handle(self, *args, no_demo: bool, **options):
        self.ensure_admin()
        if no_demo:
            return
        available = get_commands()
        for step, what, essential in DEMO_STEPS:
            command, *arguments = step.split()
            if command not in available:
                continue
            self.stdout.write(f"• {what} ({step})")
            try:
                call_command(command, *arguments, stdout=self.stdout, stderr=self.stderr)
            except CommandError as exc:
                if essential:
                    raise
                self.stderr.write(f"  incomplete, the demo goes on: {exc}")

    def ensure_admin(self) -> None:
        users = get_user_model()
        credentials_file = settings.DATA_DIR / "admin-credentials.json"
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write(f"Admin account exists (credentials were written to {credentials_file}).")
            return
        password = secrets.token_urlsafe(18)
        users.objects.create_superuser("admin", "admin@vitamin.local", password)
        write_private_json(credentials_file, {"username": "admin", "password": password, "login_url": "/admin/login/"})
        self.stdout.write(self.style.SUCCESS("Created the platform admin account:"))
        self.stdout.write(f"    username: admin\n    password: {password}\n    (also written to {credentials_file})")
