"""Management commands for platform admins, and the demo partners `make run` creates."""

from __future__ import annotations

import json
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from partner_support import basic_auth, credit_code

from audit.models import AuditEvent
from institutions.models import Institution, InstitutionStatus
from oauth.demo import CREDENTIALS_FILE, create_demo_partners
from oauth.models import Client, Token

pytestmark = pytest.mark.django_db


def run(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_create_institution_approve_create_client_and_suspend(irene):
    created = run(
        "create_institution",
        "--name=演示保险股份有限公司",
        "--type=insurer",
        f"--credit-code={credit_code(5)}",
        "--contact-email=ops@insurer.example",
        f"--owner={irene.email}",
        "--approve",
    )
    assert created["status"] == "approved" and created["owner"] == irene.username and created["type"] == "insurer"
    institution = Institution.objects.get(pk=created["id"])
    assert institution.legal_name == "演示保险股份有限公司"
    assert institution.members.get().user == irene

    client = run("create_client", institution.credit_code, "--name=Batch job", "--scope=catalog:read query")
    assert client["client_id"].startswith("vtc_") and client["client_secret"].startswith("vcs_")
    assert client["scope"] == "catalog:read query" and client["token_endpoint"].endswith("/oauth/token")
    stored = Client.objects.get(client_id=client["client_id"])
    assert stored.check_client_secret(client["client_secret"]) and client["client_secret"] not in stored.secret_hash

    suspended = run("suspend_institution", str(institution.pk), "--reason=Licence revoked by the regulator.")
    assert suspended["status"] == "suspended"
    change = institution.status_changes.first()
    assert (change.to_status, change.reason, change.changed_by) == (
        "suspended",
        "Licence revoked by the regulator.",
        None,
    )
    assert AuditEvent.objects.filter(action="institution.status_changed", actor_type="system").count() == 2


def test_commands_refuse_bad_input():
    with pytest.raises(CommandError, match="check character"):
        call_command(
            "create_institution", "--name=X", "--credit-code=91330100000000010X", "--contact-email=x@x.example"
        )
    with pytest.raises(CommandError, match="No institution"):
        call_command("create_client", "12345", "--name=x")
    pending = run(
        "create_institution", "--name=Pending", f"--credit-code={credit_code(6)}", "--contact-email=p@x.example"
    )
    assert pending["status"] == "pending"
    with pytest.raises(CommandError, match="not approved"):
        call_command("create_client", str(pending["id"]), "--name=x")
    with pytest.raises(CommandError, match="cannot go from Pending review to Suspended"):
        call_command("suspend_institution", str(pending["id"]), "--reason=x")


def test_demo_partners_are_created_once_and_their_credentials_work(client, data_dir, tmp_path):
    path = create_demo_partners(tmp_path)
    assert path == tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    partners = json.loads(path.read_text())["partners"]
    assert [(p["institution"], p["type"]) for p in partners] == [
        ("蚂蚁演示基金管理有限公司", "fund_company"),
        ("演示商业银行股份有限公司", "bank"),
    ]
    assert all(
        Institution.objects.get(legal_name=p["institution"]).status == InstitutionStatus.APPROVED for p in partners
    )
    for partner in partners:
        assert partner["token_endpoint"].endswith("/oauth/token")
        answer = client.post(
            "/oauth/token",
            {"grant_type": "client_credentials"},
            secure=True,
            HTTP_AUTHORIZATION=basic_auth(partner["client_id"], partner["client_secret"]),
        )
        assert answer.status_code == 200
        assert set(answer.json()["scope"].split()) == {
            "catalog:read",
            "subscriptions:write",
            "query",
            "download",
            "lookup",
            "usage:read",
            "audit:read",
        }

    # A second run reuses everything and leaves the file as it is.
    before = path.read_text()
    assert create_demo_partners(tmp_path) == path
    assert path.read_text() == before
    assert Institution.objects.count() == 2 and Client.objects.count() == 2

    # Without the file the secrets cannot be recovered: they are rotated and written again.
    path.unlink()
    create_demo_partners(tmp_path)
    again = json.loads(path.read_text())["partners"]
    assert [p["client_id"] for p in again] == [p["client_id"] for p in partners]
    assert all(new["client_secret"] != old["client_secret"] for new, old in zip(again, partners, strict=True))
    assert Token.objects.count() == 2


def test_demo_partners_command_prints_where_the_file_is(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    assert run("create_demo_partners") == {"credentials_file": str(tmp_path / CREDENTIALS_FILE)}
    out = StringIO()
    call_command("create_demo_partners", stdout=out)
    assert str(tmp_path / CREDENTIALS_FILE) in out.getvalue()
