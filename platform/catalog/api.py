"""The catalog API for partners (scope catalog:read): datasets, versions, schema.

A dataset's sample reads data under a subscription, so it is served with the other metered
read paths (`query.views.DatasetSample`).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from catalog import describe
from catalog.listing import search_datasets
from catalog.models import Dataset
from catalog.serializers import DatasetDetailSerializer, DatasetSummarySerializer, VersionSerializer
from datasets.spec import TIERS
from vitamin.api import PartnerListView, PartnerView
from vitamin.errors import ApiError


def get_dataset(slug: str) -> Dataset:
    dataset = Dataset.objects.filter(slug=slug, is_active=True).first()
    if dataset is None:
        raise ApiError(f"There is no dataset {slug!r} in the catalog.", code="dataset_not_found", status_code=404)
    return dataset


class DatasetList(PartnerListView):
    serializer_class = DatasetSummarySerializer

    @extend_schema(
        summary="Search the catalog",
        parameters=[
            OpenApiParameter("q", str, description="Words to find in title, description, theme or keywords."),
            OpenApiParameter("tier", str, enum=TIERS),
            OpenApiParameter("theme", str),
            OpenApiParameter("update_frequency", str),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        tier = self.request.query_params.get("tier", "")
        if tier and tier not in TIERS:
            raise ApiError(f"tier must be one of {', '.join(TIERS)}.", code="invalid_request")
        return search_datasets(
            text=self.request.query_params.get("q", ""),
            tier=tier,
            theme=self.request.query_params.get("theme", ""),
            update_frequency=self.request.query_params.get("update_frequency", ""),
        )


class DatasetDetail(PartnerView):
    @extend_schema(summary="A dataset's metadata, freshness and coverage", responses=DatasetDetailSerializer)
    def get(self, request, slug: str):
        dataset = get_dataset(slug)
        version = dataset.latest_version()
        context = {"version": version, "dictionary": describe.data_dictionary(dataset, version)}
        return Response(DatasetDetailSerializer(dataset, context=context).data)


class VersionList(PartnerListView):
    serializer_class = VersionSerializer

    @extend_schema(summary="A dataset's versions, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return get_dataset(self.kwargs["slug"]).versions.order_by("-number")


class DatasetSchema(PartnerView):
    @extend_schema(
        summary="The data dictionary, with the latest version's column statistics",
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, slug: str):
        dataset = get_dataset(slug)
        version = dataset.latest_version()
        return Response(
            {
                "dataset": dataset.slug,
                "version": version.number if version else None,
                "columns": [entry.to_dict() for entry in describe.data_dictionary(dataset, version)],
            }
        )
