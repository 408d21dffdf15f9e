"""What each limit of a plan means to a partner: its name in words, its unit, and what happens when it is reached.

The portal shows these beside the numbers: on a subscription's usage, and on a plan's terms before
access is requested. A daily metric's sentence follows from how it is charged, the rule in
`datasets.query.limits.CHARGED_AFTER_USE` that the metering paths follow: charged before the work
and refused whole, or counted after it so that the use crossing the limit completes. Every daily
limit is a DAY window of the quota service (a calendar day in VITAMIN_TIME_ZONE); no plan has a
monthly limit, so none is shown as one. The words are portal text, in the page's language (docs/portal.md,
"Languages").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from datasets.query.limits import CHARGED_AFTER_USE, CONCURRENT_QUERIES, DAILY_METRICS, Limits
from datasets.spec import Mode


class Unit(StrEnum):
    COUNT = "count"
    BYTES = "bytes"
    SECONDS = "seconds"


@dataclass(frozen=True)
class Term:
    """One limit of a plan: `name` is the Limits field, `metric` the quota metric it caps per day (if any)."""

    name: str
    label: str
    unit: Unit
    at_limit: str
    metric: str | None = None


@dataclass(frozen=True)
class TermValue:
    term: Term
    value: int | float


# The daily metrics in words and units, by quota metric name (DAILY_METRICS decides which exist; a test holds them equal).
METRIC_WORDS: dict[str, tuple[str, Unit]] = {
    "queries": (gettext_lazy("queries per day"), Unit.COUNT),
    "rows_returned": (gettext_lazy("rows returned per day"), Unit.COUNT),
    "bytes_scanned": (gettext_lazy("bytes scanned per day"), Unit.BYTES),
    "bytes_downloaded": (gettext_lazy("bytes downloaded per day"), Unit.BYTES),
    "lookups": (gettext_lazy("lookups per day"), Unit.COUNT),
    "cohort_customers": (gettext_lazy("cohort customers per day"), Unit.COUNT),
}

# The daily metrics each access mode is charged against (docs/query.md, sharing.md, lookup.md): a query also
# charges a job's result download to bytes_downloaded. The per-query limits bound queries only.
METRICS_BY_MODE: dict[str, tuple[str, ...]] = {
    Mode.QUERY: ("queries", "rows_returned", "bytes_scanned", "bytes_downloaded"),
    Mode.DOWNLOAD: ("bytes_downloaded",),
    Mode.LOOKUP: ("lookups", "cohort_customers"),
}

_REFUSED_BEFORE = gettext_lazy(
    "A request that would pass the daily limit is refused whole before any work is done "
    "(HTTP 429 quota_exceeded) and nothing is charged for it; the count starts again at midnight (%(zone)s)."
)
_COUNTED_AFTER = gettext_lazy(
    "Counted when each query ends: the query that crosses the daily limit completes, and the next one is "
    "refused (HTTP 429 quota_exceeded) until midnight (%(zone)s)."
)


def _per_query_terms() -> tuple[Term, ...]:
    """Limits that are not counted per day: enforced by the query path itself (docs/query.md). Built on each call,
    in the active language, like every term."""
    return (
        Term(
            CONCURRENT_QUERIES,
            _("queries at once"),
            Unit.COUNT,
            _(
                "A query started while every slot is in use is refused (HTTP 429 quota_exceeded); retry when one finishes."
            ),
        ),
        Term(
            "max_query_seconds",
            _("time per query"),
            Unit.SECONDS,
            _("A query still running at this time is stopped (HTTP 408 time_limit_exceeded)."),
        ),
        Term(
            "max_result_rows",
            _("rows per result"),
            Unit.COUNT,
            _("A larger result is cut to its first rows and marked truncated: true."),
        ),
    )


def daily_term(metric: str) -> Term:
    """The term of a daily metric, with what happens at its limit."""
    label, unit = METRIC_WORDS[metric]
    sentence = _COUNTED_AFTER if metric in CHARGED_AFTER_USE else _REFUSED_BEFORE
    return Term(
        DAILY_METRICS[metric],
        str(label),
        unit,
        sentence % {"zone": timezone.get_default_timezone_name()},
        metric=metric,
    )


def metrics_for(modes: Iterable[str]) -> list[str]:
    """The daily metrics that use in `modes` is charged against, in DAILY_METRICS order."""
    charged = {metric for mode in modes for metric in METRICS_BY_MODE.get(mode, ())}
    return [metric for metric in DAILY_METRICS if metric in charged]


def plan_terms(limits: Limits, modes: Iterable[str] | None = None) -> list[TermValue]:
    """The limits of `limits` that bind use in `modes` (every limit when None), daily metrics first, each with
    its value and what happens when it is reached."""
    modes = list(Mode) if modes is None else list(modes)
    terms = [daily_term(metric) for metric in metrics_for(modes)]
    terms += list(_per_query_terms()) if Mode.QUERY in modes else []
    return [TermValue(term, getattr(limits, term.name)) for term in terms]
