"""The staff's view of usage across institutions: per institution and per dataset, today and over the last
30 days, the top consumers of each metric, and each metric's total per day.

Read from `access.usage.usage_across`, the numbers the partners' pages and the usage API show.
"""

from __future__ import annotations

from django.shortcuts import render

from access import usage
from access.plan_terms import daily_term
from datasets.query.limits import DAILY_METRICS
from portal import charts
from vitamin.staff import staff_required

TOP_CONSUMERS = 5


@staff_required
def show_usage(request):
    across = usage.usage_across()
    metrics = []
    for metric in DAILY_METRICS:
        term = daily_term(metric)
        top = across.top(metric, TOP_CONSUMERS)
        metrics.append(
            {
                "metric": metric,
                "term": term,
                "chart": charts.daily_columns(
                    list(zip(across.days, across.per_day[metric], strict=True)), label=term.label, unit=term.unit
                ),
                "top": [(each.label, each.period[metric]) for each in top],
                "top_chart": charts.bar_chart(
                    [(each.label, each.period[metric]) for each in top], unit=term.unit, label_width=200
                )
                if top
                else None,
                "today": across.per_day[metric][-1],
                "period": sum(across.per_day[metric]),
            }
        )
    return render(
        request,
        "portal/subscriptions/staff_usage.html",
        {
            "across": across,
            "metrics": metrics,
            "days": usage.CHART_DAYS,
            "by_institution": _table(across.institutions),
            "by_dataset": _table(across.datasets),
        },
    )


def _table(consumers: list[usage.Consumer]) -> list[tuple[usage.Consumer, list[tuple[int, int, str]]]]:
    """Each consumer with (today, period, unit) per daily metric, in DAILY_METRICS order."""
    units = {metric: daily_term(metric).unit for metric in DAILY_METRICS}
    return [
        (each, [(each.today[metric], each.period[metric], unit) for metric, unit in units.items()])
        for each in consumers
    ]
