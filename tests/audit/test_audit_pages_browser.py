"""The audit pages in a real browser: staff find a partner's queries in the log and suspend the partner; a partner's
owner reads and verifies her institution's trail."""

from __future__ import annotations

import json

import pytest
from catalog_support import approved, auth, bearer_token
from partner_support import sign_in_browser

from audit import verification
from audit.actors import by_client_id
from audit.models import AuditEvent
from audit.service import record
from datasets.spec import Mode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


def test_staff_find_bobs_queries_suspend_the_fund_and_the_owner_verifies_her_trail(
    live_server, page, client, catalog, fund, bank, alice, bob, olga, plan
):
    verification.forget()
    base = live_server.url
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    # Bob queries through a tool he authorized: the events name the tool's client and the fund.
    token = bearer_token(fund, user=bob)
    for _ in range(2):
        response = client.post("/api/v1/query", {"sql": SQL}, content_type="application/json", **auth(token))
        assert response.status_code == 200, response.content
        b"".join(response.streaming_content)
    bank_query = record("query.run", **by_client_id("bank-tool", bank.pk), target="dataset:card_transactions")
    bobs = list(AuditEvent.objects.filter(action="query.run", institution=str(fund.pk)))
    assert len(bobs) == 2

    # Olga searches the log by institution and event.
    sign_in_browser(page, base, olga, "/audit/search/")
    page.fill("input[name=institution]", str(fund.pk))
    page.fill("input[name=action]", "query.run")
    page.click("button:has-text('Search')")
    page.wait_for_url(f"{base}/audit/search/?*")
    rows = page.locator("tr.audit-event")
    assert rows.count() == 2
    assert {int(text) for text in rows.locator("td:first-child").all_inner_texts()} == {event.seq for event in bobs}
    assert page.locator(f"#event-{bank_query.seq}").count() == 0
    assert "dataset:industry_prosperity_monthly" in rows.first.inner_text()
    assert "Demo Fund Management Co." in rows.first.inner_text()
    with page.expect_download() as download:
        page.click("#export-jsonl")
    lines = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert sorted(json.loads(line)["seq"] for line in lines) == sorted(event.seq for event in bobs)

    # She suspends the fund from its page: its tool is refused on its next request.
    page.goto(f"{base}/institutions/{fund.pk}/")
    page.select_option("#id_to_status", "suspended")
    page.fill("#id_reason", "Queries outside the agreed purpose, under review.")
    page.click("button:has-text('Change status')")
    assert page.locator("#status").inner_text() == "Suspended"
    refused = client.post("/api/v1/query", {"sql": SQL}, content_type="application/json", **auth(token))
    assert refused.status_code == 401
    assert refused.json()["error"]["details"]["reason"] == "institution_not_active"
    page.select_option("#id_to_status", "approved")
    page.fill("#id_reason", "Review closed.")
    page.click("button:has-text('Change status')")
    assert page.locator("#status").inner_text() == "Approved"
    page.click("button:has-text('Sign out')")

    # Alice, the fund's owner, opens her trail from the institution page and verifies the chain.
    sign_in_browser(page, base, alice, f"/institutions/{fund.pk}/")
    page.click("nav.tabs a:has-text('Audit trail')")
    page.wait_for_url(f"{base}/institutions/{fund.pk}/audit/")
    for event in bobs:
        assert event.hash[:12] in page.locator(f"#event-{event.seq} .hash").inner_text()
    assert page.locator(f"#event-{bank_query.seq}").count() == 0
    kept = bobs[0]
    page.fill("#id_anchor", f"{kept.seq}:{kept.hash}")
    page.click("button:has-text('Verify the chain')")
    page.wait_for_url(f"{base}/institutions/{fund.pk}/audit/")
    notes = page.locator(".messages").inner_text()
    assert "Chain intact" in notes
    assert f"Anchor {kept.seq} is in the chain, unchanged." in notes
