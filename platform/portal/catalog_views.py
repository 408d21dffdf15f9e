"""Catalog pages: the listing, a dataset's page, and the form to request access to it.

Pages are for signed-in users; with VITAMIN_PUBLIC_CATALOG the listing (metadata
only) is open to everyone. Samples of aggregate data are shown to whoever the
grant service lets query the dataset (and to platform staff).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from access import service as access
from access import subscriptions
from access.models import QuotaPlan, Subscription
from access.plan_terms import plan_terms
from audit.service import record
from catalog import describe, samples
from catalog.listing import facet_values, listed_time_range, search_datasets
from catalog.models import TIER_CHOICES, Dataset
from datasets.spec import MODES_BY_TIER, TIERS, Mode
from institutions.models import MANAGER_ROLES, Institution, InstitutionStatus, Member
from portal import charts
from portal.subscription_forms import RequestAccessForm
from vitamin.refusals import Refusal


def list_datasets(request):
    if not request.user.is_authenticated and not settings.PUBLIC_CATALOG:
        return redirect_to_login(request.get_full_path())
    filters = {
        "text": request.GET.get("q", "").strip(),
        "tier": request.GET.get("tier", "") if request.GET.get("tier") in TIERS else "",
        "theme": request.GET.get("theme", ""),
        "update_frequency": request.GET.get("frequency", ""),
    }
    return render(
        request,
        "portal/catalog/list.html",
        {
            "datasets": [(dataset, listed_time_range(dataset)) for dataset in search_datasets(**filters)],
            "filters": filters,
            "tiers": TIER_CHOICES,
            **facet_values(),
        },
    )


@login_required
def show_dataset(request, slug: str):
    dataset = _active_dataset(slug)
    version = dataset.latest_version()
    dictionary = describe.data_dictionary(dataset, version)
    memberships = list(Member.objects.filter(user=request.user).select_related("institution"))
    return render(
        request,
        "portal/catalog/dataset.html",
        {
            "dataset": dataset,
            "version": version,
            "modes": [access.mode_label(mode) for mode in MODES_BY_TIER[dataset.tier]],
            "columns": [
                (entry, charts.share_bars([("non-null", entry.non_null_share), ("distinct", entry.distinct_share)]))
                for entry in dictionary
            ],
            "coverage": describe.coverage(dataset, version, dictionary),
            "freshness": describe.freshness(dataset, version),
            "approximate_distinct": any(entry.distinct_approximate for entry in dictionary),
            "next_refresh_at": describe.next_refresh_at(dataset),
            "versions": dataset.versions.order_by("-number"),
            "privacy_items": _privacy_items(version.privacy_report if version else {}),
            "sample": _sample_block(request, dataset, version, memberships),
            "access": _access_rows(dataset, memberships),
            "lookup": describe.lookup_terms(describe.spec_for(dataset, version)),
            "offered_plans": offered_plans(dataset),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def request_access(request, slug: str):
    dataset = _active_dataset(slug)
    institutions = Institution.objects.filter(
        members__user=request.user, members__role__in=MANAGER_ROLES, status=InstitutionStatus.APPROVED
    ).distinct()
    if not institutions.exists():
        return render(
            request,
            "portal/catalog/request_access.html",
            {"dataset": dataset, "form": None, "offered_plans": offered_plans(dataset)},
            status=403,
        )
    form = RequestAccessForm(
        request.POST or None,
        dataset=dataset,
        institutions=institutions,
        initial={"institution": request.GET.get("institution")},
    )
    if request.method == "POST" and form.is_valid():
        try:
            subscription = subscriptions.request_access(
                form.cleaned_data["institution"],
                dataset,
                modes=form.cleaned_data["modes"],
                purpose=form.cleaned_data["purpose"],
                plan=form.cleaned_data["plan"],
                by=request.user,
                request=request,
            )
        except Refusal as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                _("Access to %(title)s was requested; the administrators will review it.") % {"title": dataset.title},
            )
            return redirect("subscription", pk=subscription.pk)
    return render(
        request,
        "portal/catalog/request_access.html",
        {"dataset": dataset, "form": form, "offered_plans": offered_plans(dataset)},
    )


def offered_plans(dataset: Dataset) -> list[tuple[QuotaPlan, list]]:
    """The plans a partner may ask for, each with the limits that bind this dataset's modes and what happens at
    each: shown before a request."""
    modes = access.offered_modes(dataset.tier)
    return [(plan, plan_terms(plan.limits(), modes)) for plan in QuotaPlan.objects.filter(is_offered=True)]


def _active_dataset(slug: str) -> Dataset:
    dataset = Dataset.objects.filter(slug=slug, is_active=True).first()
    if dataset is None:
        raise Http404("No such dataset in the catalog.")
    return dataset


def _sample_block(request, dataset: Dataset, version, memberships: list[Member]) -> dict:
    """The sample the viewer may see: open rows, an aggregate preview for subscribers, or why not."""
    granted_to = None
    if samples.for_subscribers_only(dataset, version) and not request.user.is_staff:
        granted_to = next(
            (member.institution for member in memberships if access.allowed(member.institution, dataset, Mode.QUERY)),
            None,
        )
        if granted_to is None:
            return {"hidden": True}
    try:
        sample = samples.sample_for(dataset, version, dimension=request.GET.get("dimension") or None)
    except samples.SampleError as exc:
        return {"error": str(exc)}
    block = {"sample": sample}
    if sample.kind == "aggregate":
        block["chart"] = charts.bar_chart([(row[0], row[1]) for row in sample.rows])
        record(
            "catalog.sample",
            institution=str(granted_to.pk) if granted_to else "",
            target=f"dataset:{dataset.slug}",
            details={"version": sample.version, "dimension": sample.dimension, "via": "portal"},
            request=request,
        )
    return block


def _access_rows(dataset: Dataset, memberships: list[Member]) -> list[dict]:
    """For each of the viewer's institutions: its subscription to this dataset and whether it may request one."""
    found = {
        subscription.institution_id: subscription
        for subscription in Subscription.objects.filter(
            dataset=dataset, institution__in=[member.institution_id for member in memberships]
        )
    }
    rows = []
    for member in memberships:
        subscription = found.get(member.institution_id)
        rows.append(
            {
                "institution": member.institution,
                "subscription": subscription,
                "can_request": member.can_manage
                and bool(access.offered_modes(dataset.tier))
                and member.institution.status == InstitutionStatus.APPROVED
                and (subscription is None or subscriptions.can(subscription, "request")),
            }
        )
    return rows


_PRIVACY_LABELS = {
    "k_required": gettext_lazy("k required"),
    "k_achieved": gettext_lazy("k achieved"),
    "quasi_identifiers": gettext_lazy("Quasi-identifiers"),
    "entity_column": gettext_lazy("Entity column"),
    "distinct_entities": gettext_lazy("Distinct entities"),
    "rows_in": gettext_lazy("Rows in"),
    "rows_published": gettext_lazy("Rows published"),
    "rows_suppressed": gettext_lazy("Rows suppressed"),
    "columns_dropped": gettext_lazy("Columns dropped"),
    "columns_pseudonymized": gettext_lazy("Columns pseudonymized"),
    "columns_generalized": gettext_lazy("Columns generalized"),
    "passed": gettext_lazy("Passed"),
}


def _privacy_items(report: dict) -> list[tuple[str, str]]:
    items = []
    for key, label in _PRIVACY_LABELS.items():
        if key not in report:
            continue
        value = report[key]
        if isinstance(value, dict):
            value = ", ".join(f"{name} ({rule})" for name, rule in value.items()) or "—"
        elif isinstance(value, list | tuple):
            value = ", ".join(map(str, value)) or "—"
        elif value is None:
            value = "—"
        items.append((label, value))
    return items
