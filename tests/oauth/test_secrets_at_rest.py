"""No client secret, token, code or initial access token is ever stored in plain text."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.db import connection
from partner_support import REDIRECT_URI, basic_auth, code_verifier

from oauth import clients


def _every_stored_value() -> str:
    """Every value in every table of the database, as one string."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            values.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(values)


@pytest.mark.django_db
def test_database_holds_no_secret_in_plain_text(client, tool, fund, alice, bob):
    issued = {"client secret": tool.secret}
    issued["rotated secret"] = clients.rotate_secret(tool.client, by=alice)
    issued["initial access token"] = clients.issue_registration_token(fund, scope="query", by=alice)

    client.force_login(bob)
    verifier = code_verifier()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": tool.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "query",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    answer = client.post(f"/oauth/authorize?{query}", {"decision": "allow"}, secure=True)
    issued["authorization code"] = parse_qs(urlsplit(answer["Location"]).query)["code"][0]
    tokens = client.post(
        "/oauth/token",
        {
            "grant_type": "authorization_code",
            "code": issued["authorization code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        secure=True,
        HTTP_AUTHORIZATION=basic_auth(tool.client_id, issued["rotated secret"]),
    ).json()
    issued["access token"] = tokens["access_token"]
    issued["refresh token"] = tokens["refresh_token"]

    stored = _every_stored_value()
    assert len(stored) > 1000  # the scan really read the tables
    for what, value in issued.items():
        assert len(value) >= 40, what
        assert value not in stored, f"the {what} is stored in plain text"
        assert value[4:] not in stored, f"the {what} (without its prefix) is stored in plain text"
