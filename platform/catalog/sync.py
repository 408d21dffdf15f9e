"""Spec files → Dataset rows. The spec file owns a dataset's metadata; this copies it into the catalog."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.service import record
from catalog.models import Dataset
from datasets.spec import DatasetSpec, load_specs


def spec_variables() -> dict[str, object]:
    """Values the demo specs' `${...}` placeholders take from settings."""
    return {
        "VITAMIN_DEMO_TRANSACTIONS": settings.DEMO_TRANSACTIONS,
        "VITAMIN_DEMO_CONSUMERS": settings.DEMO_CONSUMERS,
        "VITAMIN_DEMO_COMPANIES": settings.DEMO_COMPANIES,
    }


def load_catalog_specs() -> list[DatasetSpec]:
    """Every spec in the configured folder, validated together (raises datasets.spec.SpecError)."""
    return load_specs(settings.DATASET_SPECS_DIR, spec_variables())


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@transaction.atomic
def sync_datasets(specs: list[DatasetSpec]) -> SyncReport:
    """Create or update a Dataset per spec; datasets whose spec is gone become inactive (never deleted)."""
    report = SyncReport()
    now = timezone.now()
    for spec in specs:
        values = {
            "title": spec.title,
            "description": spec.description,
            "publisher": spec.publisher,
            "contact": spec.contact,
            "license": spec.license,
            "keywords": list(spec.keywords),
            "theme": spec.theme,
            "tier": spec.tier,
            "update_frequency": spec.update_frequency,
            "schedule": spec.schedule,
            "spec": spec.to_document(),
            "spec_path": spec.file,
            "spec_hash": spec.fingerprint,
            "is_active": True,
        }
        dataset = Dataset.objects.filter(slug=spec.slug).first()
        if dataset is None:
            # Scheduled refreshes start from now: the first build is explicit (bootstrap or an admin).
            Dataset.objects.create(slug=spec.slug, last_scheduled_at=now, **values)
            report.created.append(spec.slug)
        elif dataset.spec_hash != spec.fingerprint or not dataset.is_active or dataset.spec_path != spec.file:
            for name, value in values.items():
                setattr(dataset, name, value)
            dataset.save()
            report.updated.append(spec.slug)
        else:
            report.unchanged.append(spec.slug)
    gone = Dataset.objects.filter(is_active=True).exclude(slug__in=[spec.slug for spec in specs])
    report.deactivated = sorted(gone.values_list("slug", flat=True))
    gone.update(is_active=False)
    if report.created or report.updated or report.deactivated:
        record("dataset.sync", target="catalog", details=report.to_dict())
    return report
