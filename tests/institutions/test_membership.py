"""Invitations by signed, expiring email links; removing members."""

from __future__ import annotations

import re

import pytest
from django.core import mail, signing
from partner_support import make_user

from audit.models import AuditEvent
from institutions import links, members
from institutions.models import Member, Role

pytestmark = pytest.mark.django_db


def invitation_link() -> str:
    return re.search(r"https?://\S+/invitations/\S+/", mail.outbox[-1].body).group(0)


def token_of(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[1]


def test_an_invited_person_joins_through_the_emailed_link(client, fund, alice):
    members.invite(fund, email="Carol@Fund.example", role=Role.VIEWER, by=alice)
    assert mail.outbox[-1].to == ["carol@fund.example"]
    link = invitation_link()

    carol = make_user("carol@fund.example")
    client.force_login(carol)
    page = client.get(link)
    assert page.status_code == 200 and b"Join Demo Fund Management Co." in page.content
    assert client.post(link).status_code == 302
    assert Member.objects.get(user=carol, institution=fund).role == Role.VIEWER
    assert client.post(link).status_code == 400  # used
    assert AuditEvent.objects.filter(action="institution.member_joined", actor_id=carol.username).exists()


def test_a_forwarded_invitation_is_useless_to_someone_else(client, fund, alice):
    members.invite(fund, email="carol@fund.example", role=Role.VIEWER, by=alice)
    mallory = make_user("mallory@evil.example")
    client.force_login(mallory)
    answer = client.post(invitation_link())
    assert answer.status_code == 400 and b"carol@fund.example" in answer.content
    assert not Member.objects.filter(user=mallory).exists()


def test_tampered_and_expired_links_are_refused(client, fund, alice, monkeypatch):
    invitation = members.invite(fund, email="carol@fund.example", role=Role.VIEWER, by=alice)
    token = token_of(invitation_link())
    with pytest.raises(members.MembershipError, match="not valid"):
        members.invitation_from_token(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    # A token for another purpose (an email verification) does not work as an invitation.
    other = links.make_token({"invitation": invitation.pk}, salt=links.VERIFY_EMAIL_SALT)
    with pytest.raises(members.MembershipError, match="not valid"):
        members.invitation_from_token(other)

    eight_days_ago = int(signing.time.time()) - 8 * 24 * 3600
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(eight_days_ago))
    old = links.make_token({"invitation": invitation.pk}, salt=links.INVITATION_SALT)
    monkeypatch.undo()
    with pytest.raises(members.MembershipError, match="expired"):
        members.invitation_from_token(old)


def test_only_owners_invite_or_remove_owners_and_the_last_owner_stays(fund, alice, bob):
    bob_membership = Member.objects.get(user=bob, institution=fund)
    bob_membership.role = Role.ADMIN
    bob_membership.save()
    with pytest.raises(members.MembershipError, match="Only an owner"):
        members.invite(fund, email="x@fund.example", role=Role.OWNER, by=bob)
    alice_membership = Member.objects.get(user=alice, institution=fund)
    with pytest.raises(members.MembershipError, match="Only an owner"):
        members.remove(alice_membership, by=bob)
    with pytest.raises(members.MembershipError, match="at least one owner"):
        members.remove(alice_membership, by=alice)
    members.remove(bob_membership, by=alice)
    assert list(fund.members.values_list("user__username", flat=True)) == [alice.username]
