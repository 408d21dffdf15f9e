"""Catalog pages on the portal: who sees the listing, what a dataset page shows, samples by tier, charts."""

from __future__ import annotations

import re

from catalog_support import approved
from partner_support import make_user

from access import subscriptions
from audit.models import AuditEvent
from portal import charts


def page(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_listing_is_for_signed_in_users_unless_made_public(client, catalog, settings, bob):
    response = client.get("/catalog/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    settings.PUBLIC_CATALOG = True
    html = client.get("/catalog/").content.decode()
    assert "Industry prosperity, monthly" in html and "Sign in" in html
    assert 'href="/catalog/industry_prosperity_monthly/"' not in html, "metadata only: no dataset pages"
    assert client.get("/catalog/industry_prosperity_monthly/").status_code == 302

    html = page(client, bob, "/catalog/?q=industry+prosperity")
    # The data's own period beside the publication time: old data published today does not look fresh.
    assert "last published" in html and "data from 2025-01-01 to 2025-03-01" in html

    html = page(client, bob, "/catalog/?q=credit")
    assert "Credit profiles" in html and "Industry prosperity" not in html
    assert "data from" not in html  # a snapshot without a time column claims no period
    assert 'href="/catalog/credit_profiles/"' in html


def test_a_dataset_page_shows_metadata_dictionary_freshness_versions_and_privacy(client, catalog, bob):
    html = page(client, bob, "/catalog/industry_prosperity_monthly/")
    for text in (
        "Vitamin demo data provider",  # publisher
        "data@vitamin.example",  # contact
        "index construction",  # license
        "industry indicators",  # theme
        "monthly",  # update frequency
        "2025-01-01 to 2025-03-01",  # temporal coverage
        "0 4 1 * *",  # schedule, next to the next refresh
        "2025-12-31",  # source watermark
        "Spending in the industry that month",  # column description
        "k achieved",  # privacy report
        "v1",  # version history
    ):
        assert text in html, text
    assert html.count('<svg class="chart share-bars"') == 9, "one small chart per column"
    assert re.search(r"<th>csi_industry</th>.*<td>主要消费</td>", html, re.S), "the open sample shows rows"


def test_aggregate_previews_are_for_subscribers(client, fund, catalog, plan, bob, dave, olga):
    outsider = page(client, dave, "/catalog/card_transactions/")
    assert "subscribed with query access see an aggregated preview" in outsider
    assert '<svg class="chart bar-chart"' not in outsider

    approved(fund, catalog.cards, plan, ["query"])
    html = page(client, bob, "/catalog/card_transactions/?dimension=channel")
    assert '<svg class="chart bar-chart"' in html and "(1 suppressed)" in html
    assert "mobile" not in html.split('id="sample"')[1].split("</section>")[0], "the group below k is not shown"
    assert "buyer-0" not in html, "no pseudonym reaches the page, not even as a column's min or max"
    assert AuditEvent.objects.filter(action="catalog.sample", institution=str(fund.pk)).count() == 1

    assert '<svg class="chart bar-chart"' in page(client, olga, "/catalog/card_transactions/"), "staff see it"


def test_a_revoked_subscription_loses_the_preview_on_the_next_page_view(client, fund, catalog, plan, bob):
    subscription = approved(fund, catalog.cards, plan, ["query"])
    assert '<svg class="chart bar-chart"' in page(client, bob, "/catalog/card_transactions/")
    subscriptions.revoke(subscription, reason="Terms breached.")
    html = page(client, bob, "/catalog/card_transactions/")
    assert '<svg class="chart bar-chart"' not in html and "aggregated preview" in html


def test_lookup_pages_show_no_rows(client, catalog, bob):
    html = page(client, bob, "/catalog/credit_profiles/")
    assert "it has no sample" in html and "customer-pseudonym" not in html


def test_request_buttons_follow_roles(client, fund, catalog, alice, bob):
    assert "Request access</a>" in page(client, alice, "/catalog/industry_prosperity_monthly/")
    assert "Request access</a>" not in page(client, bob, "/catalog/industry_prosperity_monthly/")
    assert client.get("/catalog/industry_prosperity_monthly/request/").status_code == 403
    visitor = make_user("visitor@example.com")  # signed in, member of no institution
    html = page(client, visitor, "/catalog/industry_prosperity_monthly/")
    assert "Request access</a>" not in html and "Members of an approved partner institution" in html


def test_unknown_and_inactive_datasets_are_404(client, catalog, bob):
    client.force_login(bob)
    assert client.get("/catalog/nothing_here/").status_code == 404
    type(catalog.stocks).objects.filter(pk=catalog.stocks.pk).update(is_active=False)
    assert client.get("/catalog/stock_attention_daily/").status_code == 404


def test_charts_escape_what_they_draw():
    svg = charts.bar_chart([("<script>alert(1)</script>", 3), (None, 1)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg and "href" not in svg
    bars = charts.share_bars([("non-null", 0.5), ("distinct", None)], width=100)
    assert 'width="50.0"' in bars and "n/a" in bars


def test_the_portal_offers_only_modes_that_are_served(client, fund, bank, catalog, alice, dave):
    lookup_page = page(client, dave, "/catalog/credit_profiles/")
    assert "Consented lookups" in lookup_page and "(planned)" not in lookup_page
    assert "Request access</a>" in lookup_page, "lookups are served: a bank may ask for them"
    assert "credit_assessment" in lookup_page and "resident_id, mobile" in lookup_page, "the terms a bank integrates to"
    lookup_form = page(client, dave, f"/catalog/credit_profiles/request/?institution={bank.pk}")
    assert 'value="lookup"' in lookup_form and 'value="query"' not in lookup_form
    open_page = page(client, alice, "/catalog/industry_prosperity_monthly/")
    assert "SQL queries, Bulk download (Delta Sharing)." in open_page, "both modes of the open tier, neither planned"
    assert "(planned)" not in open_page
    form = page(client, alice, f"/catalog/industry_prosperity_monthly/request/?institution={fund.pk}")
    assert 'value="query"' in form and 'value="download"' in form and 'value="lookup"' not in form
    assert "(planned)" not in form
    aggregate_form = page(client, alice, f"/catalog/card_transactions/request/?institution={fund.pk}")
    assert 'value="query"' in aggregate_form and 'value="download"' not in aggregate_form, "open datasets only"
