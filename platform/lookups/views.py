"""The lookup API (scope `lookup`, grant mode `lookup`); docs/lookup.md is the integrator's guide.

    POST /api/v1/datasets/{slug}/lookup    a batch of consented customers: their fields, or Y/N against a cut-off
    POST /api/v1/datasets/{slug}/cohorts   aggregate features of consented customers per group, k rule applied

Everything a lookup must pass happens in `lookups.service`; these views read the body
(bounded in size before it is parsed) and send the answer's bytes as they are.
The serializers below document the shapes for the OpenAPI schema; `lookups.requests` reads them.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers

from lookups import requests as shapes
from lookups import service
from query.views import QueryErrorResponseSerializer
from vitamin.api import PartnerView
from vitamin.refusals import Kind, Refusal

# A JSON item (identifier, consent, reference) is well under this; the body limit is items x this.
MAX_ITEM_BYTES = 1024


class ConsentSerializer(serializers.Serializer):
    reference = serializers.CharField(max_length=shapes.MAX_TEXT, help_text="The id of the consent the bank holds.")
    scope = serializers.ListField(
        child=serializers.CharField(), help_text='What it covers (a string or a list), e.g. "credit_assessment".'
    )
    expires_at = serializers.DateTimeField(help_text="When it expires (ISO 8601; without an offset: platform time).")


class ItemSerializer(serializers.Serializer):
    reference = serializers.CharField(max_length=shapes.MAX_TEXT, help_text="The bank's own reference, echoed back.")
    id_type = serializers.ChoiceField(choices=["resident_id", "mobile"])
    id = serializers.CharField(required=False, help_text="The identifier (normalized by the platform, docs/lookup.md).")
    id_sha256 = serializers.CharField(required=False, help_text="Or the SHA-256 hex of its normalized form.")
    consent = ConsentSerializer()


class ThresholdSerializer(serializers.Serializer):
    field = serializers.CharField()
    cutoff = serializers.FloatField()


class LookupRequestSerializer(serializers.Serializer):
    transaction_id = serializers.CharField(
        max_length=100, help_text="Yours, unique per request: the same id within 24 h replays the first answer."
    )
    items = ItemSerializer(many=True)
    fields = serializers.ListField(child=serializers.CharField(), required=False)
    threshold = ThresholdSerializer(required=False, help_text="Answer only Y / N / N/A: value >= cutoff?")


class BandSerializer(serializers.Serializer):
    band = serializers.CharField(help_text="A numeric field to group in bands of `width`.")
    width = serializers.FloatField()


class CohortRequestSerializer(serializers.Serializer):
    transaction_id = serializers.CharField(max_length=100)
    items = ItemSerializer(many=True, help_text="The consented customers (reference optional).")
    group_by = serializers.ListField(
        child=serializers.JSONField(), required=False, help_text='Field names, or {"band": field, "width": w}.'
    )
    measures = serializers.ListField(child=serializers.CharField(), required=False)
    cutoff = ThresholdSerializer(required=False, help_text="Adds each group's share at or above the cut-off.")


_ERROR = OpenApiResponse(QueryErrorResponseSerializer)
_ERRORS = {status: _ERROR for status in (400, 401, 403, 404, 409, 413, 429, 503)}


class _LookupView(PartnerView):
    required_scope = "lookup"
    max_items_setting = ""

    def check_size(self, request) -> None:
        limit = getattr(settings, self.max_items_setting) * MAX_ITEM_BYTES + 4096
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise Refusal(
                f"The request body is larger than this endpoint accepts ({limit} bytes).",
                code="request_too_large",
                kind=Kind.TOO_LARGE,
            )

    def run(self, request, slug: str, answering) -> HttpResponse:
        """The body bounded in size, then `answering` (service.lookup or service.cohort) as the caller's client."""
        self.check_size(request)
        client = request.auth_client
        result = answering(
            institution_id=client.institution_id,
            client_id=client.client_id,
            slug=slug,
            data=request.data,
            request=request,
        )
        response = HttpResponse(result.body, content_type="application/json")
        response["Cache-Control"] = "no-store"
        response["X-Vitamin-Replayed"] = "true" if result.replayed else "false"
        if result.version is not None:
            response["X-Vitamin-Version"] = str(result.version)
        return response


class Lookup(_LookupView):
    max_items_setting = "LOOKUP_MAX_ITEMS"

    @extend_schema(
        operation_id="lookup_customers",
        summary="Look up consented customers",
        description=(
            "Each item is answered in the same shape whether or not the customer exists: status matched "
            "(with `fields`, or `answer` Y/N in threshold mode), not_found, or refused (its consent, its "
            "identifier, or the cut-off limit; with `refusal`). Each item counts against lookups_per_day; a "
            "batch that does not fit is refused whole (429). Header X-Vitamin-Replayed: true when the answer "
            "is the first one for this transaction id."
        ),
        request=LookupRequestSerializer,
        responses={200: OpenApiResponse(description="The answers, in the items' order."), **_ERRORS},
    )
    def post(self, request, slug: str):
        return self.run(request, slug, service.lookup)


class Cohort(_LookupView):
    max_items_setting = "COHORT_MAX_ITEMS"

    @extend_schema(
        operation_id="assess_cohort",
        summary="Aggregate features of a cohort of consented customers",
        description=(
            "Per group: customers, mean and quartiles of each measure, and the share at or above a cut-off. "
            "Groups of fewer than k matched customers are left out without a trace. The list is not kept: "
            "only its size and a keyed hash are audited. Each item counts against cohort_customers_per_day."
        ),
        request=CohortRequestSerializer,
        responses={200: OpenApiResponse(description="The released groups."), **_ERRORS},
    )
    def post(self, request, slug: str):
        return self.run(request, slug, service.cohort)
