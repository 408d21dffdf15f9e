"""The quota admin pages list usage and counters and let nobody edit them."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from quotas.models import QuotaCounter, UsageDaily
from quotas.service import DatabaseBackend, Window, consume

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage_row() -> UsageDaily:
    consume("bank-of-test", "queries", 3, 10, Window.DAY, backend=DatabaseBackend())
    return UsageDaily.objects.get(subject="bank-of-test")


def test_usage_list_filters_by_metric_and_day(admin_client, usage_row):
    UsageDaily.objects.create(subject="fund-co", metric="rows", day=date(2026, 1, 5), amount=7)
    url = reverse("admin:quotas_usagedaily_changelist")

    everything = admin_client.get(url)
    only_rows = admin_client.get(url, {"metric": "rows"})

    assert everything.status_code == 200
    assert b"bank-of-test" in everything.content and b"fund-co" in everything.content
    assert b"fund-co" in only_rows.content and b"bank-of-test" not in only_rows.content
    assert admin_client.get(url, {"day__year": "2026", "day__month": "1"}).status_code == 200


def test_counter_list_shows_counters(admin_client, usage_row):
    response = admin_client.get(reverse("admin:quotas_quotacounter_changelist"))

    assert response.status_code == 200
    assert b"bank-of-test" in response.content


@pytest.mark.parametrize("model", [UsageDaily, QuotaCounter])
def test_nobody_can_add_change_or_delete(admin_client, usage_row, model):
    row = model.objects.get(subject="bank-of-test")
    name = f"admin:quotas_{model._meta.model_name}"

    assert admin_client.get(reverse(f"{name}_add")).status_code == 403
    assert admin_client.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    admin_client.post(reverse(f"{name}_change", args=[row.pk]), {"subject": "forged"})

    assert model.objects.filter(subject="bank-of-test").count() == 1
    assert not model.objects.filter(subject="forged").exists()
