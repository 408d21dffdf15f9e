"""Two approved demo partners with working API credentials, for `make run` and trying things out.

`create_demo_partners(data_dir)` is idempotent: a second run reuses the
institutions and clients. Secrets are stored hashed, so they can only be written
out when made: a run keeps demo-credentials.json as it is when the secret in it
still works, and otherwise (file deleted, edited, or secret rotated on the
portal) rotates the client's secret and rewrites the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.db import transaction

from institutions import lifecycle
from institutions.credit_code import check_character
from institutions.models import Institution, InstitutionStatus, InstitutionType
from oauth import clients, credentials
from oauth.metadata import server_metadata
from oauth.models import Client, GrantType
from oauth.scopes import ALL_SCOPES

CREDENTIALS_FILE = "demo-credentials.json"
CLIENT_NAME = "Demo partner client"

DEMO_PARTNERS = [
    {
        "legal_name": "蚂蚁演示基金管理有限公司",
        "english_name": "Demo Fund Management Co.",
        "type": InstitutionType.FUND_COMPANY,
        "credit_code": "91330100759000001",  # 17 characters; the check character is added below
        "contact_email": "fund-demo@vitamin.local",
    },
    {
        "legal_name": "演示商业银行股份有限公司",
        "english_name": "Demo Commercial Bank",
        "type": InstitutionType.BANK,
        "credit_code": "91310000631000002",
        "contact_email": "bank-demo@vitamin.local",
    },
]


def create_demo_partners(data_dir: Path) -> Path:
    """Create (or reuse) the demo partners; returns the path of the credentials file."""
    path = Path(data_dir) / CREDENTIALS_FILE
    known_secrets = _read_secrets(path)
    token_endpoint = server_metadata(None)["token_endpoint"]
    entries = []
    changed = False
    for spec in DEMO_PARTNERS:
        with transaction.atomic():
            institution = _institution(spec)
            client, secret = _client(institution, known_secrets)
        changed = changed or secret != known_secrets.get(client.client_id)
        entries.append(
            {
                "institution": institution.legal_name,
                "institution_en": spec["english_name"],
                "type": institution.type,
                "client_id": client.client_id,
                "client_secret": secret,
                "scope": client.scope,
                "token_endpoint": token_endpoint,
            }
        )
    if changed or not path.exists():
        _write_private(path, json.dumps({"partners": entries}, ensure_ascii=False, indent=2) + "\n")
    return path


def _institution(spec: dict) -> Institution:
    credit_code = spec["credit_code"] + check_character(spec["credit_code"])
    institution = Institution.objects.filter(credit_code=credit_code).first()
    if institution is None:
        institution = lifecycle.file_application(
            applicant=None,
            legal_name=spec["legal_name"],
            type=spec["type"],
            credit_code=credit_code,
            contact_name=spec["english_name"],
            contact_email=spec["contact_email"],
        )
    if institution.status == InstitutionStatus.PENDING:
        lifecycle.change_status(institution, InstitutionStatus.APPROVED, reason="Demo partner.")
    return institution


def _client(institution: Institution, known_secrets: dict[str, str]) -> tuple[Client, str]:
    client = institution.oauth_clients.filter(name=CLIENT_NAME, disabled_at__isnull=True).first()
    if client is None:
        return clients.create_client(
            institution, name=CLIENT_NAME, scope=" ".join(ALL_SCOPES), grant_types=[GrantType.CLIENT_CREDENTIALS]
        )
    secret = known_secrets.get(client.client_id)
    if secret and credentials.matches(secret, client.secret_hash):
        return client, secret
    return client, clients.rotate_secret(client)


def _read_secrets(path: Path) -> dict[str, str]:
    try:
        partners = json.loads(path.read_text())["partners"]
        return {entry["client_id"]: entry["client_secret"] for entry in partners}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_private(path: Path, text: str) -> None:
    """Readable by this user only: the file holds live secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # also when the file already existed
