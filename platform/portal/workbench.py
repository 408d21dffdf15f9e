"""What the SQL workbench shows beside the editor, and who may use it.

The workbench runs queries through `query.service.run_query` with the portal user as the actor: the
same grants, versions, quotas, limits and audit as the API (docs/portal.md). This module holds the
page's own knowledge: which institutions a user may query for, the schema panel of each granted
dataset (columns, roles, what the tier allows, sample queries built from the dataset's own rules),
and where in the SQL an engine error points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _

from access import service as access
from catalog import describe
from datasets.spec import DatasetSpec
from institutions.models import Institution, InstitutionStatus, Member
from oauth.scopes import DELEGABLE_SCOPES

# A member may use the workbench when their role may hand the `query` scope to a tool: what a tool may do
# for them over the API, they may do themselves in the browser (owners, admins, analysts; not viewers).
QUERY_SCOPE = "query"
QUERY_ROLES = tuple(role for role, scopes in DELEGABLE_SCOPES.items() if QUERY_SCOPE in scopes)


def query_memberships(user) -> list[Member]:
    """The user's memberships in approved institutions whose role may query, by institution name."""
    return list(
        Member.objects.filter(user=user, role__in=QUERY_ROLES, institution__status=InstitutionStatus.APPROVED)
        .select_related("institution")
        .order_by("institution__legal_name")
    )


def institution_for(user, institution_pk: str | int | None) -> Institution:
    """The institution the workbench acts for: the one asked for, else the user's first; raises
    PermissionDenied when the user may not query for it (or for any)."""
    memberships = query_memberships(user)
    if not memberships:
        raise PermissionDenied(_("The SQL workbench is for members of an approved institution who may run queries."))
    if institution_pk in (None, ""):
        return memberships[0].institution
    try:
        wanted = int(institution_pk)
    except (TypeError, ValueError):
        raise Http404("No such institution.") from None
    for member in memberships:
        if member.institution_id == wanted:
            return member.institution
    raise PermissionDenied(_("You may not run queries for this institution."))


@dataclass
class DatasetPanel:
    """One granted dataset as the schema panel shows it."""

    slug: str
    title: str
    tier: str
    version: int | None
    columns: list[describe.ColumnEntry]
    aggregates: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    measures: tuple[str, ...] = ()
    k: int | None = None
    samples: list[str] = field(default_factory=list)


def panels(institution: Institution) -> list[DatasetPanel]:
    """The datasets the institution may query right now, each under the version a query would read."""
    result = []
    for grant in access.active_grants(institution, QUERY_SCOPE):
        version = access.version_for(grant)
        dataset = grant.dataset
        spec = describe.spec_for(dataset, version)
        columns = [
            entry
            for entry in describe.data_dictionary(dataset, version)
            if entry.role not in describe.HIDDEN_ROLES or spec.tier == "open"
        ]
        panel = DatasetPanel(
            slug=dataset.slug,
            title=dataset.title,
            tier=spec.tier,
            version=version.number if version is not None else None,
            columns=columns,
            samples=sample_queries(spec, [entry.name for entry in columns]),
        )
        if spec.analysis is not None:
            panel.aggregates = spec.analysis.aggregates
            panel.dimensions = spec.analysis.dimensions
            panel.measures = spec.analysis.measures
            panel.k = spec.analysis.min_entities
        result.append(panel)
    return result


_AGGREGATE_SQL = {"sum": "SUM", "avg": "AVG", "min": "MIN", "max": "MAX"}


def sample_queries(spec: DatasetSpec, columns: list[str]) -> list[str]:
    """Queries that run as shown under the dataset's own rules (a test runs each one through the gateway):
    rows of an open dataset; for an aggregate dataset, counts and a measure by its first dimension (the
    time column when it is one, so the result charts as a line)."""
    slug = spec.slug
    if spec.tier == "open":
        shown = ", ".join(columns[:8]) or "*"
        queries = [f"SELECT {shown}\nFROM {slug}\nLIMIT 100"]
        if spec.time_column and spec.time_column in columns:
            queries.append(
                f"SELECT {spec.time_column}, COUNT(*) AS row_count\nFROM {slug}\n"
                f"GROUP BY {spec.time_column}\nORDER BY {spec.time_column}"
            )
        return queries
    analysis = spec.analysis
    if spec.tier != "aggregate" or analysis is None or not analysis.dimensions:
        return []
    dimension = spec.time_column if spec.time_column in analysis.dimensions else analysis.dimensions[0]
    queries = []
    if "count" in analysis.aggregates:
        queries.append(
            f"SELECT {dimension}, COUNT(*) AS row_count\nFROM {slug}\nGROUP BY {dimension}\nORDER BY {dimension}"
        )
    function = next((_AGGREGATE_SQL[name] for name in analysis.aggregates if name in _AGGREGATE_SQL), None)
    if function and analysis.measures:
        measure = analysis.measures[0]
        other = next((name for name in analysis.dimensions if name != dimension), None)
        grouped = f"{dimension}, {other}" if other else dimension
        queries.append(
            f"SELECT {grouped}, {function}({measure}) AS {function.lower()}_{measure}\nFROM {slug}\n"
            f"GROUP BY {grouped}\nORDER BY {grouped}"
        )
    return queries


def error_place(sql: str, position: int | None) -> dict | None:
    """Where an engine error points (its `position` is the 1-based character): {position, line, column}, all
    1-based, or None when the engine gave none (or one outside the text)."""
    if position is None or not 1 <= position <= len(sql) + 1:
        return None
    index = position - 1
    line_start = sql.rfind("\n", 0, index) + 1
    return {"position": position, "line": sql.count("\n", 0, index) + 1, "column": index - line_start + 1}
