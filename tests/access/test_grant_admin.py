"""Plans are edited in the Django admin, subscriptions' limit overrides too; every save is audited."""

from __future__ import annotations

from catalog_support import approved

from access import service
from access.models import QuotaPlan, Subscription
from audit.models import AuditEvent


def plan_form(**overrides) -> dict:
    values = {
        "name": "research",
        "description": "For research teams.",
        "is_offered": "on",
        "queries_per_day": 500,
        "rows_returned_per_day": 10_000,
        "bytes_scanned_per_day": 10**9,
        "bytes_downloaded_per_day": 10**9,
        "lookups_per_day": 0,
        "cohort_customers_per_day": 0,
        "concurrent_queries": 2,
        "max_query_seconds": 60,
        "max_result_rows": 5000,
    }
    return values | overrides


def test_plans_are_created_and_changed_in_the_admin_with_audit(admin_client):
    response = admin_client.post("/admin/access/quotaplan/add/", plan_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    plan = QuotaPlan.objects.get(name="research")
    assert AuditEvent.objects.get(action="plan.create").target == "plan:research"

    admin_client.post(f"/admin/access/quotaplan/{plan.pk}/change/", plan_form(queries_per_day=700))
    assert QuotaPlan.objects.get(pk=plan.pk).queries_per_day == 700
    event = AuditEvent.objects.get(action="plan.change")
    assert event.details["changed"] == {"queries_per_day": 700} and event.actor_id == "admin"


def test_limit_overrides_are_validated_and_take_effect(admin_client, fund, demo_datasets, plan):
    subscription = approved(fund, demo_datasets.industry, plan, ["query"])
    url = f"/admin/access/subscription/{subscription.pk}/change/"
    changes = list(subscription.changes.values_list("pk", flat=True))
    history_inline = {  # the read-only history inline's management form, as the page sends it
        "changes-TOTAL_FORMS": len(changes),
        "changes-INITIAL_FORMS": len(changes),
        **{f"changes-{index}-id": pk for index, pk in enumerate(changes)},
        **{f"changes-{index}-subscription": subscription.pk for index in range(len(changes))},
    }
    refused = admin_client.post(url, {"limit_overrides": '{"queries_per_year": 5}', **history_inline})
    assert refused.status_code == 200 and "Unknown limit" in refused.content.decode()
    saved = admin_client.post(url, {"limit_overrides": '{"queries_per_day": 5}', **history_inline})
    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert Subscription.objects.get(pk=subscription.pk).limit_overrides == {"queries_per_day": 5}
    assert service.ensure(fund, demo_datasets.industry, "query").limits.queries_per_day == 5
    event = AuditEvent.objects.get(action="subscription.change_limits")
    assert event.details["to"] == {"queries_per_day": 5} and event.actor_id == "admin"
    assert admin_client.get("/admin/access/subscription/").status_code == 200
