"""JSON shapes of the catalog API."""

from __future__ import annotations

from rest_framework import serializers

from catalog import describe
from catalog.listing import listed_time_range
from catalog.models import Dataset, DatasetVersion
from datasets.spec import MODES_BY_TIER


class DatasetSummarySerializer(serializers.ModelSerializer):
    """A listing row; expects the annotations of catalog.listing.search_datasets."""

    latest_version = serializers.IntegerField(source="latest_number", allow_null=True)
    last_published_at = serializers.DateTimeField(allow_null=True)
    time_range = serializers.SerializerMethodField(
        help_text="The period the latest version's data covers ({column, from, to}), beside its publication time."
    )
    access_modes = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "slug",
            "title",
            "description",
            "publisher",
            "tier",
            "theme",
            "keywords",
            "update_frequency",
            "access_modes",
            "latest_version",
            "last_published_at",
            "time_range",
        ]

    def get_access_modes(self, dataset: Dataset) -> list[str]:
        return list(MODES_BY_TIER[dataset.tier])

    def get_time_range(self, dataset: Dataset) -> dict | None:
        return listed_time_range(dataset)


class VersionSerializer(serializers.ModelSerializer):
    files = serializers.SerializerMethodField()
    time_range = serializers.SerializerMethodField(
        help_text="The period this version's data covers ({column, from, to}); null without a time column."
    )

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "status",
            "created_at",
            "retired_at",
            "time_range",
            "row_count",
            "bytes",
            "schema_hash",
            "source_watermark",
            "files",
            "privacy_report",
        ]

    def get_time_range(self, version: DatasetVersion) -> dict | None:
        return describe.time_range(version.dataset_spec, version.column_stats)

    def get_files(self, version: DatasetVersion) -> list[dict]:
        return [{key: entry.get(key) for key in ("path", "size_bytes", "sha256")} for entry in version.files]


class DatasetDetailSerializer(serializers.ModelSerializer):
    """DCAT-style metadata, freshness and coverage; the context holds `version` (latest) and `dictionary`."""

    access_modes = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    next_refresh_at = serializers.SerializerMethodField()
    coverage = serializers.SerializerMethodField()
    lookup = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "slug",
            "title",
            "description",
            "publisher",
            "contact",
            "license",
            "keywords",
            "theme",
            "tier",
            "access_modes",
            "update_frequency",
            "schedule",
            "next_refresh_at",
            "coverage",
            "latest_version",
            "lookup",
        ]

    def get_access_modes(self, dataset: Dataset) -> list[str]:
        return list(MODES_BY_TIER[dataset.tier])

    def get_latest_version(self, dataset: Dataset) -> dict | None:
        version = self.context["version"]
        if version is None:
            return None
        fresh = describe.freshness(dataset, version)
        return {
            "number": version.number,
            "published_at": serializers.DateTimeField().to_representation(version.created_at),
            "time_range": fresh.time_range,
            "data_days_behind": fresh.days_behind,
            "data_behind": fresh.behind,
            "row_count": version.row_count,
            "bytes": version.bytes,
            "source_watermark": version.source_watermark or None,
        }

    def get_next_refresh_at(self, dataset: Dataset) -> str | None:
        moment = describe.next_refresh_at(dataset)
        return serializers.DateTimeField().to_representation(moment) if moment else None

    def get_lookup(self, dataset: Dataset) -> dict | None:
        """Lookup datasets: what a lookup or a cohort may name and read (docs/lookup.md); null otherwise."""
        return describe.lookup_terms(describe.spec_for(dataset, self.context["version"]))

    def get_coverage(self, dataset: Dataset) -> dict:
        return describe.coverage(dataset, self.context["version"], self.context["dictionary"]).to_dict()
