"""The staff's review queues: what a reviewer reads before deciding, and bulk decisions that touch only the chosen."""

from __future__ import annotations

from partner_support import make_institution, make_user

from access import subscriptions
from access.models import Subscription
from audit.models import AuditEvent
from institutions.models import Institution, InstitutionStatus

DECIDE = "/institutions/review/decide/"


def applications(dave):
    """Three pending applications: the bank's owner filed the first."""
    return [
        make_institution(
            f"Applicant {number} Co.",
            40 + number,
            owner=dave if number == 1 else None,
            status=InstitutionStatus.PENDING,
        )
        for number in (1, 2, 3)
    ]


def status_of(institution) -> str:
    return Institution.objects.get(pk=institution.pk).status


def test_the_application_queue_shows_each_applications_details(client, olga, dave):
    first, *_ = applications(dave)
    Institution.objects.filter(pk=first.pk).update(contact_phone="+86 571 8888 0000")
    client.force_login(olga)
    html = client.get("/institutions/review/").content.decode()
    section = html.split(f'id="review-{first.pk}"')[1].split("</section>")[0]
    for text in (
        first.legal_name,
        first.credit_code,
        "Fund management company",
        first.contact_email,
        "+86 571 8888 0000",
        dave.email,
        'name="selected"',
    ):
        assert text in section, text
    assert 'value="approve-selected"' in html and 'value="reject-selected"' in html
    assert '<label for="bulk-reason">' in html, "the bulk reason has a visible label"


def test_bulk_approval_approves_the_chosen_applications_only_each_audited(client, olga, dave):
    first, second, third = applications(dave)
    client.force_login(olga)
    response = client.post(
        DECIDE,
        {"action": "approve-selected", "selected": [first.pk, third.pk], "bulk_reason": "Documents checked."},
        follow=True,
    )
    assert (
        response.status_code == 200
        and f"Approved: {first.legal_name}; {third.legal_name}." in response.content.decode()
    )
    assert [status_of(each) for each in (first, second, third)] == ["approved", "pending", "approved"]
    events = AuditEvent.objects.filter(action="institution.status_changed", actor_id=olga.username)
    assert sorted(event.target for event in events) == sorted([f"institution:{first.pk}", f"institution:{third.pk}"])
    assert all(event.details["reason"] == "Documents checked." for event in events)


def test_one_application_is_decided_with_its_own_reason(client, olga, dave):
    first, second, _ = applications(dave)
    client.force_login(olga)
    client.post(
        DECIDE,
        {
            "action": f"reject:{second.pk}",
            f"reason-{second.pk}": "Not a financial institution.",
            "selected": [first.pk],
        },
    )
    assert (status_of(first), status_of(second)) == ("pending", "closed"), "the row's button, not the selection"


def test_a_decision_without_a_reason_changes_nothing(client, olga, dave):
    first, second, _ = applications(dave)
    client.force_login(olga)
    html = client.post(DECIDE, {"action": "reject-selected", "selected": [first.pk, second.pk]}, follow=True)
    assert "A reason is required" in html.content.decode()
    assert status_of(first) == status_of(second) == "pending"
    assert not AuditEvent.objects.filter(action="institution.status_changed").exists()


def test_nothing_but_pending_applications_is_decided_here(client, olga, dave, fund):
    first, *_ = applications(dave)
    client.force_login(olga)
    client.post(DECIDE, {"action": "reject-selected", "selected": [first.pk, fund.pk], "bulk_reason": "Tidy up."})
    assert status_of(first) == "closed" and status_of(fund) == "approved", "an approved institution is not closed"


def test_only_staff_decide_applications(client, alice, dave):
    first, *_ = applications(dave)
    assert client.post(DECIDE, {"action": f"approve:{first.pk}", f"reason-{first.pk}": "x"}).status_code == 302
    for person in (alice, dave, make_user("mallory@example.com")):
        client.force_login(person)
        response = client.post(DECIDE, {"action": f"approve:{first.pk}", f"reason-{first.pk}": "Me."})
        assert response.status_code == 403
    assert status_of(first) == "pending"


def test_unclear_buttons_are_refused_without_a_change(client, olga, dave):
    first, *_ = applications(dave)
    client.force_login(olga)
    for action in ("approve-selected", "revoke:1", "approve:abc", ""):
        response = client.post(DECIDE, {"action": action, "bulk_reason": "x"}, follow=True)
        assert response.status_code == 200 and "Select at least one application" in response.content.decode()
    assert status_of(first) == "pending"


def test_the_subscription_queue_shows_the_purpose_and_why_it_was_refused_before(client, olga, fund, demo_datasets):
    subscription = subscriptions.request_access(
        fund, demo_datasets.industry, modes=["query"], purpose="Index research."
    )
    subscriptions.reject(subscription, reason="Say which index.")
    subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="The 淘金100 index.")
    client.force_login(olga)
    html = client.get("/subscriptions/review/").content.decode()
    row = html.split(f'id="review-{subscription.pk}"')[1].split("</tr>")[0]
    assert "The 淘金100 index." in row and "Say which index." in row
    assert Subscription.objects.get(pk=subscription.pk).status == "requested"
