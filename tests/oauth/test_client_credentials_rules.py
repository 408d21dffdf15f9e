"""The secret check behind client authentication, against any presented value and any moment.

A client accepts its current secret, and its previous one only while the overlap after a
rotation lasts; never an empty value, a hash, or a near miss. No database: the rule is
Client.check_client_secret on an unsaved client.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st

from oauth import credentials
from oauth.models import Client

CURRENT = "vcs_current-secret-of-the-client"
PREVIOUS = "vcs_previous-secret-of-the-client"


def client_with(*, previous_expires_in: timedelta | None) -> Client:
    return Client(
        secret_hash=credentials.hash_secret(CURRENT),
        previous_secret_hash=credentials.hash_secret(PREVIOUS) if previous_expires_in is not None else "",
        previous_secret_expires_at=timezone.now() + previous_expires_in if previous_expires_in is not None else None,
    )


overlaps = st.one_of(st.none(), st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30)))


@given(presented=st.text(max_size=80), overlap=overlaps)
@example(presented=CURRENT, overlap=None)
@example(presented=PREVIOUS, overlap=None)
@example(presented=PREVIOUS, overlap=timedelta(hours=1))
@example(presented=PREVIOUS, overlap=timedelta(hours=-1))
@example(presented=CURRENT, overlap=timedelta(hours=-1))
def test_only_the_current_secret_or_the_previous_one_during_its_overlap_is_accepted(presented, overlap):
    client = client_with(previous_expires_in=overlap)
    in_overlap = overlap is not None and overlap > timedelta(seconds=1)
    expected = presented == CURRENT or (presented == PREVIOUS and in_overlap)
    if overlap is not None and abs(overlap) <= timedelta(seconds=1):
        return  # too close to the end to say which side of it the check runs
    assert client.check_client_secret(presented) is expected
    assert client.in_secret_overlap is in_overlap


@given(overlap=overlaps)
def test_both_secrets_as_they_are_and_as_their_hashes_or_near_misses(overlap):
    client = client_with(previous_expires_in=overlap)
    assert client.check_client_secret(CURRENT)
    for near in (
        "",
        CURRENT[:-1],
        CURRENT + " ",
        CURRENT.upper(),
        credentials.hash_secret(CURRENT),
        client.secret_hash,
    ):
        assert not client.check_client_secret(near), near
    assert not client.check_client_secret(client.previous_secret_hash)


def test_a_previous_secret_with_no_end_or_an_empty_hash_never_works():
    no_end = client_with(previous_expires_in=timedelta(hours=1))
    no_end.previous_secret_expires_at = None
    assert not no_end.check_client_secret(PREVIOUS) and not no_end.in_secret_overlap
    emptied = client_with(previous_expires_in=timedelta(hours=1))
    emptied.previous_secret_hash = ""
    assert not emptied.check_client_secret("") and not emptied.check_client_secret(PREVIOUS)
