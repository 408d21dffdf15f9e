"""grant_subscription and create_demo_subscriptions, and the expiry and expiry-notice tasks."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from catalog_support import approved
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from access import service, subscriptions
from access.demo import DEMO_PLAN
from access.models import Subscription
from access.tasks import PERIODIC_TASKS, expire_subscriptions, notify_expiring
from audit.models import AuditEvent
from catalog.models import Dataset
from institutions.models import Institution
from oauth.demo import create_demo_partners


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_grant_subscription_grants_directly(fund, demo_datasets, plan):
    output = run(
        "grant_subscription",
        "--institution", str(fund.pk),
        "--dataset", "industry_prosperity_monthly",
        "--modes", "query,download",
        "--plan", "standard",
        "--expires", "2099-12-31",
        "--json",
    )  # fmt: skip
    payload = json.loads(output)
    assert payload["status"] == "approved" and payload["modes"] == ["query", "download"]
    assert payload["last_day"] == "2099-12-31" and payload["plan"] == "standard"
    assert service.allowed(fund, demo_datasets.industry, "download")
    assert AuditEvent.objects.filter(action="subscription.grant", target=f"subscription:{payload['id']}").exists()


def test_grant_subscription_by_credit_code_with_the_default_term(fund, demo_datasets, plan):
    output = run("grant_subscription", "--institution", fund.credit_code, "--dataset", "card_transactions",
                 "--modes", "query", "--plan", "standard")  # fmt: skip
    assert "may use card_transactions (query) on plan standard" in output
    subscription = Subscription.objects.get(institution=fund, dataset=demo_datasets.cards)
    assert subscription.expires_at - timezone.now() > timedelta(days=364)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dataset", "card_transactions", "--modes", "download", "--plan", "standard"], "allows query access"),
        (["--dataset", "card_transactions", "--modes", "query", "--plan", "gold"], "No plan gold"),
        (["--dataset", "nothing", "--modes", "query", "--plan", "standard"], "No dataset nothing"),
        (
            ["--dataset", "card_transactions", "--modes", "query", "--plan", "standard", "--expires", "soon"],
            "--expires",
        ),
        (
            ["--dataset", "card_transactions", "--modes", "query", "--plan", "standard", "--expires", "2001-01-01"],
            "future",
        ),
    ],
)
def test_grant_subscription_refuses_bad_input(fund, demo_datasets, plan, arguments, message):
    with pytest.raises(CommandError, match=message):
        run("grant_subscription", "--institution", str(fund.pk), *arguments)
    assert not Subscription.objects.exists()


def test_demo_subscriptions_are_idempotent_and_skip_what_is_missing(
    db, data_dir, demo_datasets, django_capture_on_commit_callbacks
):
    Dataset.objects.filter(slug="stock_attention_daily").delete()  # as if not synced yet
    first = run("create_demo_subscriptions")
    assert "skipped: the demo partner does not exist" in first

    create_demo_partners(data_dir)
    with django_capture_on_commit_callbacks(execute=True):
        results = json.loads(run("create_demo_subscriptions", "--json"))["subscriptions"]
    assert mail.outbox == [], "demo partners are not mailed"
    outcomes = {(line["institution"], line["dataset"]): line["outcome"] for line in results}
    assert outcomes == {
        ("Demo Fund Management Co.", "industry_prosperity_monthly"): "granted",
        (
            "Demo Fund Management Co.",
            "stock_attention_daily",
        ): "skipped: the dataset is not in the catalog (run sync_datasets)",
        ("Demo Fund Management Co.", "card_transactions"): "granted",
        ("Demo Fund Management Co.", "company_consumption_monthly"): "granted",
        ("Demo Fund Management Co.", "market_daily"): "granted",
        ("Demo Fund Management Co.", "listed_brands"): "granted",
        ("Demo Commercial Bank", "credit_profiles"): "granted",
        ("Demo Commercial Bank", "card_transactions"): "granted",
    }
    bank = Institution.objects.get(contact_email="bank-demo@vitamin.local")
    assert service.ensure(bank, "credit_profiles", "lookup").subscription.plan.name == DEMO_PLAN

    again = json.loads(run("create_demo_subscriptions", "--json"))["subscriptions"]
    assert {line["outcome"] for line in again if line["dataset"] != "stock_attention_daily"} == {"unchanged"}
    assert Subscription.objects.count() == 7


def test_expire_subscriptions_marks_passed_expiries(fund, demo_datasets, plan):
    due = approved(fund, demo_datasets.industry, plan, ["query"], days=1)
    later = approved(fund, demo_datasets.cards, plan, ["query"], days=30)
    assert expire_subscriptions(now=timezone.now() + timedelta(days=2)) == 1
    assert Subscription.objects.get(pk=due.pk).status == "expired"
    assert Subscription.objects.get(pk=later.pk).status == "approved"
    assert AuditEvent.objects.filter(action="subscription.expire", target=f"subscription:{due.pk}").count() == 1
    assert expire_subscriptions(now=timezone.now() + timedelta(days=2)) == 0


def test_expiry_notices_go_out_once_per_term(fund, alice, demo_datasets, plan, django_capture_on_commit_callbacks):
    soon = approved(fund, demo_datasets.industry, plan, ["query"], days=5, by=alice)
    approved(fund, demo_datasets.cards, plan, ["query"], days=30)
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_expiring() == 1
        assert notify_expiring() == 0
    assert [message.subject for message in mail.outbox] == [
        "[Vitamin] Access to Industry prosperity, monthly expires in 5 days"
    ]
    assert AuditEvent.objects.filter(action="subscription.expiry_notice").count() == 1
    # Extending the subscription starts a new term, which gets its own notice.
    subscriptions.grant(
        fund, demo_datasets.industry, modes=["query"], plan=plan, expires_at=soon.expires_at + timedelta(days=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_expiring() == 1


def test_periodic_tasks_expire():
    assert set(PERIODIC_TASKS) == {"access-expire-subscriptions", "access-notify-expiring"}
    for entry in PERIODIC_TASKS.values():
        assert 0 < entry["options"]["expires"] < entry["schedule"]


def test_the_embedded_mail_goes_to_stderr_so_json_output_stays_parseable(
    alice, fund, demo_datasets, plan, settings, capsys, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "vitamin.mail.ConsoleBackend"  # the embedded default (tests otherwise keep mail in memory)
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "grant_subscription", "--institution", str(fund.pk), "--dataset", "industry_prosperity_monthly",
            "--modes", "query", "--plan", "standard", "--json",
        )  # fmt: skip
    printed = capsys.readouterr()
    assert json.loads(printed.out)["status"] == "approved", "stdout holds the JSON and nothing else"
    assert "Subject:" in printed.err, "the notification e-mail was printed, on stderr"
