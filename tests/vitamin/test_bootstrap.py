"""`manage.py bootstrap` (part of `make run`): the admin account is created once, its password shown once."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_admin_is_created_once_and_credentials_are_private(settings):
    first = io.StringIO()
    call_command("bootstrap", "--no-demo", stdout=first)
    credentials_file = settings.DATA_DIR / "admin-credentials.json"
    credentials = json.loads(credentials_file.read_text())
    assert credentials["password"] in first.getvalue()
    assert oct(credentials_file.stat().st_mode & 0o777) == "0o600"
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(credentials["password"])

    second = io.StringIO()
    call_command("bootstrap", "--no-demo", stdout=second)
    assert credentials["password"] not in second.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
