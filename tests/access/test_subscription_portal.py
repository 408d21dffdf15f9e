"""Subscription pages: requesting on the portal, who sees and cancels what, and the staff review queue."""

from __future__ import annotations

from datetime import timedelta

from catalog_support import approved, industry_table, publish_table
from django.utils import timezone

from access import service, subscriptions
from access.models import Subscription
from audit.models import AuditEvent


def signed_in(client, user):
    client.force_login(user)
    return client


def request_form(fund, plan, **overrides):
    return {
        "institution": fund.pk,
        "modes": ["query"],
        "plan": plan.pk,
        "purpose": "Factor research for the 淘金100 index.",
    } | overrides


def test_an_owner_requests_access_on_the_portal(client, fund, alice, demo_datasets, plan):
    signed_in(client, alice)
    form_page = client.get("/catalog/card_transactions/request/")
    assert form_page.status_code == 200 and "Send request" in form_page.content.decode()
    response = client.post("/catalog/card_transactions/request/", request_form(fund, plan))
    subscription = Subscription.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/subscriptions/{subscription.pk}/"
    assert (subscription.status, subscription.modes, subscription.requested_by) == ("requested", ["query"], alice)
    event = AuditEvent.objects.get(action="subscription.request")
    assert (event.actor_type, event.actor_id) == ("user", alice.username)


def test_the_request_form_refuses_modes_the_tier_does_not_allow(client, fund, alice, demo_datasets, plan):
    signed_in(client, alice)
    response = client.post("/catalog/card_transactions/request/", request_form(fund, plan, modes=["download"]))
    assert response.status_code == 200 and "not one of the available choices" in response.content.decode()
    response = client.post("/catalog/card_transactions/request/", request_form(fund, plan, purpose=""))
    assert response.status_code == 200
    assert not Subscription.objects.exists()


def test_an_owner_cannot_request_for_an_institution_they_do_not_manage(client, fund, bank, dave, demo_datasets, plan):
    signed_in(client, dave)
    response = client.post("/catalog/card_transactions/request/", request_form(fund, plan))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Subscription.objects.exists()


def test_who_sees_and_cancels_a_subscription(client, fund, alice, bob, dave, olga, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"])
    url = f"/subscriptions/{subscription.pk}/"

    assert "Cancel subscription" in signed_in(client, alice).get(url).content.decode()
    analyst_page = signed_in(client, bob).get(url)
    assert analyst_page.status_code == 200 and "Cancel subscription" not in analyst_page.content.decode()
    assert client.post(f"{url}cancel/").status_code == 403
    assert signed_in(client, dave).get(url).status_code == 403, "an outsider institution's owner"
    assert "Demo Fund" not in client.get("/subscriptions/").content.decode()
    assert client.post(f"{url}cancel/").status_code == 403
    assert signed_in(client, olga).get(url).status_code == 200, "platform staff may look"
    assert Subscription.objects.get(pk=subscription.pk).status == "approved"

    response = signed_in(client, alice).post(f"{url}cancel/", {"reason": "No longer needed."})
    assert response.status_code == 302
    assert Subscription.objects.get(pk=subscription.pk).status == "cancelled"
    assert not service.allowed(fund, demo_datasets.industry, "query")
    assert "Request access again" in client.get(url).content.decode()


def test_the_review_queue_is_for_staff(client, fund, alice, bob, olga, demo_datasets):
    subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="Index research.")
    assert client.get("/subscriptions/review/").status_code == 302, "anonymous: to the sign-in page"
    assert signed_in(client, alice).get("/subscriptions/review/").status_code == 403
    assert client.post("/subscriptions/review/decide/", {"action": "approve:1"}).status_code == 403
    page = signed_in(client, olga).get("/subscriptions/review/").content.decode()
    assert "Index research." in page and "Demo Fund Management Co." in page and "query" in page


def test_staff_approve_with_the_rows_terms_reject_and_revoke(client, fund, bank, olga, demo_datasets, plan, store_url):
    version = publish_table(demo_datasets.industry, industry_table(), store_url)
    first = subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="A.")
    second = subscriptions.request_access(bank, demo_datasets.cards, modes=["query"], purpose="B.")
    third = subscriptions.request_access(bank, demo_datasets.credit, modes=["lookup"], purpose="C.")
    signed_in(client, olga)
    last_day = timezone.localdate() + timedelta(days=60)

    response = client.post(
        "/subscriptions/review/decide/",
        {
            "action": "approve-selected",
            "selected": [first.pk, second.pk],
            f"plan-{first.pk}": plan.pk,
            f"last_day-{first.pk}": last_day.isoformat(),
            f"pin-{first.pk}": version.pk,
            f"plan-{second.pk}": plan.pk,
            f"last_day-{second.pk}": (last_day + timedelta(days=1)).isoformat(),
        },
    )
    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == "approved"
    assert first.pinned_version == version and second.pinned_version is None
    assert first.last_day == last_day and second.last_day == last_day + timedelta(days=1)
    assert first.decided_by == olga
    assert AuditEvent.objects.filter(action="subscription.approve", actor_id=olga.username).count() == 2

    # A rejection without a reason is refused and changes nothing; with one it goes through.
    client.post("/subscriptions/review/decide/", {"action": f"reject:{third.pk}", f"reason-{third.pk}": ""})
    assert Subscription.objects.get(pk=third.pk).status == "requested"
    client.post("/subscriptions/review/decide/", {"action": f"reject:{third.pk}", f"reason-{third.pk}": "No consent."})
    assert Subscription.objects.get(pk=third.pk).status == "rejected"

    client.post(
        "/subscriptions/review/decide/",
        {"action": "revoke-selected", "selected": [first.pk, second.pk], "bulk_reason": "Contract ended."},
    )
    revoked = Subscription.objects.filter(pk__in=[first.pk, second.pk], status="revoked")
    assert revoked.count() == 2
    assert not service.allowed(fund, demo_datasets.industry, "query")


def test_a_bulk_decision_reports_the_rows_it_could_not_apply(client, fund, olga, demo_datasets, plan):
    pending = subscriptions.request_access(fund, demo_datasets.industry, modes=["query"], purpose="A.")
    active = approved(fund, demo_datasets.cards, plan, ["query"])
    response = signed_in(client, olga).post(
        "/subscriptions/review/decide/",
        {"action": "reject-selected", "selected": [pending.pk, active.pk], "bulk_reason": "Tidy up."},
        follow=True,
    )
    html = response.content.decode()
    assert "Rejected: Demo Fund Management Co. → industry_prosperity_monthly" in html
    assert "card_transactions: The subscription of Demo Fund Management Co. to card_transactions is approved" in html
    assert Subscription.objects.get(pk=active.pk).status == "approved"
