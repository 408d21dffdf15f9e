"""The admin lets staff search and filter the audit log, and nothing more."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent

CHANGELIST = reverse("admin:audit_auditevent_changelist")


def listed_seqs(response) -> set[int]:
    return {event.seq for event in response.context["cl"].result_list}


@pytest.mark.django_db
def test_changelist_filters_and_searches(admin_client, make_chain):
    events = make_chain(12)
    year = events[0].timestamp.year

    assert listed_seqs(admin_client.get(CHANGELIST)) == set(range(1, 13))
    assert listed_seqs(admin_client.get(CHANGELIST, {"actor_type": "user"})) == {3, 6, 9, 12}
    assert listed_seqs(admin_client.get(CHANGELIST, {"actor_id": "actor-1"})) == {1, 5, 9}
    assert listed_seqs(admin_client.get(CHANGELIST, {"outcome": "denied"})) == {5, 10}
    assert listed_seqs(admin_client.get(CHANGELIST, {"action": "token.issue", "institution": "inst-0"})) == {
        2,
        4,
        6,
        8,
        10,
        12,
    }
    assert listed_seqs(admin_client.get(CHANGELIST, {"q": "request-0007"})) == {7}
    assert listed_seqs(admin_client.get(CHANGELIST, {"timestamp__year": year})) == set(range(1, 13))
    assert listed_seqs(admin_client.get(CHANGELIST, {"timestamp__year": year - 1})) == set()


@pytest.mark.django_db
def test_detail_page_is_read_only(admin_client, make_chain):
    event = make_chain(1)[0]
    url = reverse("admin:audit_auditevent_change", args=[event.seq])

    page = admin_client.get(url)
    posted = admin_client.post(url, {"target": "forged", "action": "forged"})

    assert page.status_code == 200
    assert event.hash in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert posted.status_code == 403
    assert AuditEvent.objects.get().target == event.target


@pytest.mark.django_db
def test_no_add_or_delete(admin_client, make_chain):
    event = make_chain(1)[0]

    add = admin_client.get(reverse("admin:audit_auditevent_add"))
    delete = admin_client.post(reverse("admin:audit_auditevent_delete", args=[event.seq]), {"post": "yes"})
    bulk_delete = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [event.seq], "post": "yes"}
    )

    assert add.status_code == 403
    assert delete.status_code == 403
    assert bulk_delete.status_code in (200, 302)
    assert AuditEvent.objects.count() == 1
