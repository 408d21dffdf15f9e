"""Search and filters of the catalog listing, shared by the API and the portal (one query per page)."""

from __future__ import annotations

import json

from django.db.models import OuterRef, Q, QuerySet, Subquery

from catalog.describe import time_range
from catalog.models import Dataset, DatasetVersion

SEARCH_MAX_CHARS = 200


def search_datasets(
    *, text: str = "", tier: str = "", theme: str = "", update_frequency: str = ""
) -> QuerySet[Dataset]:
    """Active datasets matching every given filter, by slug, each annotated with its latest published
    version (`latest_number`, `last_published_at`, `latest_rows`, `latest_stats`; None before the first).

    `text` matches any word against title, description, theme and keywords, case-insensitively.
    """
    datasets = Dataset.objects.filter(is_active=True)
    for word in text[:SEARCH_MAX_CHARS].split():
        datasets = datasets.filter(
            Q(title__icontains=word)
            | Q(description__icontains=word)
            | Q(theme__icontains=word)
            | Q(keywords__icontains=word)
            | Q(slug__icontains=word)
        )
    if tier:
        datasets = datasets.filter(tier=tier)
    if theme:
        datasets = datasets.filter(theme=theme)
    if update_frequency:
        datasets = datasets.filter(update_frequency=update_frequency)
    latest = DatasetVersion.objects.filter(dataset=OuterRef("pk"), status=DatasetVersion.Status.PUBLISHED).order_by(
        "-number"
    )
    return datasets.annotate(
        latest_number=Subquery(latest.values("number")[:1]),
        last_published_at=Subquery(latest.values("created_at")[:1]),
        latest_rows=Subquery(latest.values("row_count")[:1]),
        latest_stats=Subquery(latest.values("column_stats")[:1]),
    ).order_by("slug")


def listed_time_range(dataset: Dataset) -> dict | None:
    """The data's own period for a row of `search_datasets`."""
    stats = dataset.latest_stats
    if isinstance(stats, str):  # a JSON subquery comes back as text on some databases
        stats = json.loads(stats)
    return time_range(dataset.current_spec, stats)


def facet_values() -> dict[str, list[str]]:
    """The themes and update frequencies in use, for filter menus."""
    active = Dataset.objects.filter(is_active=True)
    return {
        "themes": sorted(set(active.exclude(theme="").values_list("theme", flat=True))),
        "update_frequencies": sorted(
            set(active.exclude(update_frequency="").values_list("update_frequency", flat=True))
        ),
    }
