"""Characters OAuth error messages cannot carry never turn a bad request into a server error."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from partner_support import REDIRECT_URI

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": 'https://evil.example/"x'},
        {"redirect_uri": "https://evil.example/é"},
        {"response_type": 'to"ken'},
        {"client_id": "x\\y"},
        {"scope": "query é"},
    ],
)
def test_authorization_requests_with_unquotable_characters_get_an_error_page(client, tool, bob, overrides):
    client.force_login(bob)
    params = {
        "response_type": "code",
        "client_id": tool.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "query",
        "code_challenge": "a" * 50,
        "code_challenge_method": "S256",
        **overrides,
    }
    answer = client.get("/oauth/authorize?" + urlencode(params), secure=True)
    assert answer.status_code == 400 and b"malformed" in answer.content


@pytest.mark.parametrize("data", [{"grant_type": 'x"y'}, {"grant_type": "client_credentials", "scope": "é"}])
def test_token_requests_with_unquotable_characters_get_invalid_request(client, data):
    answer = client.post("/oauth/token", data, secure=True)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
