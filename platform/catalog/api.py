"""The catalog API for partners (scope catalog:read): datasets, versions, schema, sample.

`PartnerView` and `PartnerListView` are the base of every partner API view (catalog,
subscriptions, queries): bearer token, a required scope, one pagination style, and an
`api.denied` audit event for every request refused before the view runs.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import ActorType, Outcome
from audit.service import record
from catalog import describe, samples
from catalog.listing import search_datasets
from catalog.models import Dataset, Tier
from catalog.serializers import DatasetDetailSerializer, DatasetSummarySerializer, VersionSerializer
from grants import service as grants
from grants.models import Mode
from oauth.authentication import BearerTokenAuthentication
from oauth.permissions import HasScope
from vitamin import parsers
from vitamin.errors import ApiError, error_code


class Pages(PageNumberPagination):
    """`?page=2&page_size=50`; answers {count, next, previous, results}."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class PartnerView(APIView):
    """An API view for partner institutions: OAuth bearer token with `required_scope`.

    A request refused before the view runs (401 without a valid token, 403 insufficient_scope,
    429 throttled, 406 ...) is audited here, the one place every partner view passes through:
    `record_refusal`. Refusals inside a view (grants, quotas, the query checks) are audited by
    the service that refuses.
    """

    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [HasScope]
    required_scope = "catalog:read"

    def initial(self, request, *args, **kwargs):
        try:
            super().initial(request, *args, **kwargs)
            query = request.query_params
            parsers.refuse_nul([*query.keys(), *(value for key in query for value in query.getlist(key))])
        except APIException as exc:
            record_refusal(request, exc)
            raise


def record_refusal(request, exc: APIException, *, path: str | None = None) -> None:
    """Audit a refused API request as `api.denied`: its code, status, method and path (pass `path` when
    the real one carries a credential), and the required scope when that was the reason.

    The actor is the token's client when the token was valid, else unknown (a `system` event with
    no actor id): neither the token nor any header is recorded.
    """
    details = {
        "code": error_code(exc),
        "status": exc.status_code,
        "method": request.method,
        "path": path or request.path,
    }
    if isinstance(exc, ApiError) and isinstance(exc.details, dict) and "required_scope" in exc.details:
        details["required_scope"] = exc.details["required_scope"]
    actor = {} if getattr(request, "auth_client", None) is not None else {"actor_type": ActorType.SYSTEM}
    record("api.denied", outcome=Outcome.DENIED, details=details, request=request, **actor)


class PartnerListView(PartnerView, ListAPIView):
    """A paginated list for partners: define get_queryset (one query per page, whatever its length)."""

    pagination_class = Pages


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
            OpenApiParameter("tier", str, enum=Tier.values),
            OpenApiParameter("theme", str),
            OpenApiParameter("update_frequency", str),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        tier = self.request.query_params.get("tier", "")
        if tier and tier not in Tier.values:
            raise ApiError(f"tier must be one of {', '.join(Tier.values)}.", code="invalid_request")
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


class DatasetSample(PartnerView):
    @extend_schema(
        summary="Sample of the latest version",
        description=(
            "open: real rows. aggregate: row counts by one dimension, groups with fewer than k distinct "
            "entities suppressed; needs a subscription with query access. lookup: column names only."
        ),
        parameters=[
            OpenApiParameter("limit", int, description=f"Rows of an open dataset (at most {samples.MAX_SAMPLE_ROWS})."),
            OpenApiParameter("dimension", str, description="Aggregate datasets: the column to count by."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, slug: str):
        dataset = get_dataset(slug)
        grant = None
        if dataset.tier == Tier.AGGREGATE:
            # Figures computed from non-open data are for subscribers only.
            grant = grants.ensure(request.auth_client.institution, dataset, Mode.QUERY, request=request)
        try:
            limit = int(request.query_params.get("limit", samples.SAMPLE_ROWS))
        except ValueError:
            raise ApiError("limit must be a whole number.", code="invalid_request") from None
        version = dataset.latest_version()
        try:
            sample = samples.sample_for(dataset, version, limit=limit, dimension=request.query_params.get("dimension"))
        except samples.SampleError as exc:
            raise ApiError(str(exc), code="invalid_request") from None
        if grant is not None:
            record(
                "catalog.sample",
                target=f"dataset:{dataset.slug}",
                details={
                    "version": sample.version,
                    "dimension": sample.dimension,
                    "subscription": grant.subscription.pk,
                },
                request=request,
            )
        return Response({"dataset": dataset.slug, "tier": dataset.tier, **sample.to_dict()})
