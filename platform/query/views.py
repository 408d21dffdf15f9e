"""The partner API's read paths: SQL (scope `query`) and dataset samples (scope `catalog:read`).

    POST   /api/v1/query              run one SQL statement, stream its result
    POST   /api/v1/jobs               queue it as a job (202); GET lists the institution's jobs
    GET    /api/v1/jobs/{id}          state and progress; DELETE cancels
    GET    /api/v1/jobs/{id}/result   the result file, until it expires
    GET    /api/v1/datasets/{slug}/sample   a few rows (open) or suppressed counts (aggregate, subscribers only)

Everything a query must pass (grants, versions, quotas, audit, the gateway's
checks and limits) happens in `query.service.run_query`, and for jobs in
`query.jobs`; these views only read requests and shape responses.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from access.metered import MeteredUse
from audit.actors import by_client
from catalog import samples
from catalog.api import get_dataset
from datasets.query.formats import MEDIA_TYPES
from datasets.spec import Mode
from query import jobs
from query.models import QueryJob
from query.service import FORMATS, run_query
from vitamin.api import PartnerListView, PartnerView, record_refusal
from vitamin.errors import ApiError
from vitamin.ranges import byte_range, file_response
from vitamin.refusals import Refusal

# Numbers in a request are stored or compared in 32-bit integer columns (PostgreSQL's `integer`).
MAX_REQUEST_INT = 2**31 - 1


class QueryRequestSerializer(serializers.Serializer):
    sql = serializers.CharField(trim_whitespace=False, help_text="One SELECT over the datasets you subscribe to.")
    format = serializers.ChoiceField(choices=FORMATS, default="json")
    max_rows = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REQUEST_INT,
        help_text="Lowers the plan's row cap for this query (never raises it).",
    )
    versions = serializers.DictField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_REQUEST_INT),
        required=False,
        help_text='Dataset versions to read, e.g. {"card_transactions": 3}; a subscription pinned to a version always reads that one.',
    )
    as_of = serializers.DateTimeField(
        required=False,
        help_text="Read every dataset as it was at this time: the version current then (a pinned subscription "
        "still reads its pin). Delta Sharing's `timestamp` resolves the same way.",
    )


# What DRF's CharField refuses besides a blank: NUL and lone surrogates.
_REFUSED_IN_TEXT = re.compile("[\x00\ud800-\udfff]")


def query_request(data) -> dict:
    """The request's validated fields, as `QueryRequestSerializer` gives them.

    The body nearly every request sends (`sql`, perhaps `format`) is checked here directly, by the
    serializer's own rules; anything else, and every mistake, goes through the serializer, whose
    messages the errors keep (a Hypothesis test holds the two to the same answers). Building a DRF
    serializer costs a few hundred microseconds a request, a tenth of a small query's overhead.
    """
    if isinstance(data, dict) and data.keys() <= {"sql", "format"}:
        sql, fmt = data.get("sql"), data.get("format", "json")
        if isinstance(sql, str) and sql and fmt in FORMATS and not _REFUSED_IN_TEXT.search(sql):
            return {"sql": sql, "format": fmt}
    body = QueryRequestSerializer(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data


class QueryErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    request_id = serializers.CharField()


class QueryErrorResponseSerializer(serializers.Serializer):
    error = QueryErrorSerializer()


_ERROR = OpenApiResponse(QueryErrorResponseSerializer)


class RunQuery(PartnerView):
    required_scope = "query"

    @extend_schema(
        operation_id="run_query",
        summary="Run one SQL query over subscribed datasets",
        description=(
            "JSON: {columns: [{name, type}], rows: [[...]], truncated}. csv, arrow (IPC stream) and parquet "
            "stream the rows; arrow and parquet carry `vitamin.truncated` in their metadata. "
            "Headers: X-Vitamin-Max-Rows (the row cap applied) and X-Vitamin-Versions (slug=version, ...)."
        ),
        request=QueryRequestSerializer,
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.arrow.stream"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            400: _ERROR,
            401: _ERROR,
            403: _ERROR,
            404: _ERROR,
            408: _ERROR,
            409: _ERROR,
            413: _ERROR,
            429: _ERROR,
            503: _ERROR,
        },
    )
    def post(self, request):
        values = query_request(request.data)
        run = run_query(
            institution_id=request.auth_client.institution_id,
            client_id=request.auth_client.client_id,
            sql=values["sql"],
            fmt=values["format"],
            max_rows=values.get("max_rows"),
            versions=values.get("versions"),
            as_of=values.get("as_of"),
            request=request,
        )
        response = StreamingHttpResponse(run.chunks, content_type=run.media_type)
        response["X-Vitamin-Max-Rows"] = str(run.max_rows)
        response["X-Vitamin-Versions"] = ", ".join(f"{slug}={number}" for slug, number in sorted(run.versions.items()))
        response["Cache-Control"] = "no-store"
        return response


# --- jobs ---------------------------------------------------------------------------------------


class JobLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    result = serializers.CharField(allow_null=True, help_text="The result, with the bearer token.")
    download = serializers.CharField(
        allow_null=True, help_text="A signed link to the result that needs no token, until download_expires_at."
    )
    download_expires_at = serializers.DateTimeField(allow_null=True)


class QueryJobSerializer(serializers.ModelSerializer):
    links = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = QueryJob
        fields = [
            "id",
            "state",
            "sql",
            "format",
            "max_rows",
            "versions",
            "rows_written",
            "attempts",
            "truncated",
            "bytes_scanned",
            "result_bytes",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "links",
        ]

    @extend_schema_field(JobLinksSerializer)
    def get_links(self, job: QueryJob) -> dict:
        this = reverse("api-job", args=[job.pk])
        if job.state != QueryJob.State.SUCCEEDED:
            return {"self": this, "result": None, "download": None, "download_expires_at": None}
        return {
            "self": this,
            "result": reverse("api-job-result", args=[job.pk]),
            "download": reverse("api-job-download", args=[jobs.result_link(job)]),
            "download_expires_at": timezone.localtime() + timedelta(seconds=jobs.RESULT_LINK_SECONDS),
        }

    @extend_schema_field(QueryErrorSerializer(allow_null=True))
    def get_error(self, job: QueryJob) -> dict | None:
        return {"code": job.error_code, "message": job.error_message} if job.error_code else None


def get_job(request, job_id) -> QueryJob:
    """The job, if it belongs to the caller's institution; others' jobs are 404 like missing ones."""
    job = QueryJob.objects.filter(pk=job_id, institution_id=request.auth_client.institution_id).first()
    if job is None:
        raise ApiError("There is no such job.", code="job_not_found", status_code=404)
    return job


class JobList(PartnerListView):
    required_scope = "query"
    serializer_class = QueryJobSerializer

    def get_queryset(self):
        return QueryJob.objects.filter(institution_id=self.request.auth_client.institution_id)

    @extend_schema(operation_id="list_query_jobs", summary="The institution's query jobs, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="submit_query_job",
        summary="Queue a query as a job",
        description="Checked now (grants, versions, the gateway's rules): a bad query fails here, not later.",
        request=QueryRequestSerializer,
        responses={202: QueryJobSerializer, 400: _ERROR, 401: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request):
        values = query_request(request.data)
        job = jobs.submit_job(
            institution_id=request.auth_client.institution_id,
            client_id=request.auth_client.client_id,
            sql=values["sql"],
            fmt=values["format"],
            max_rows=values.get("max_rows"),
            versions=values.get("versions"),
            as_of=values.get("as_of"),
            request=request,
        )
        data = QueryJobSerializer(job).data
        return Response(data, status=202, headers={"Location": data["links"]["self"]})


class JobDetail(PartnerView):
    required_scope = "query"

    @extend_schema(
        operation_id="get_query_job", summary="A query job's state and progress", responses=QueryJobSerializer
    )
    def get(self, request, job_id):
        return Response(QueryJobSerializer(get_job(request, job_id)).data)

    @extend_schema(
        operation_id="cancel_query_job",
        summary="Cancel a queued or running job",
        responses={200: QueryJobSerializer, 404: _ERROR, 409: _ERROR},
    )
    def delete(self, request, job_id):
        job = jobs.cancel_job(get_job(request, job_id), request=request)
        return Response(QueryJobSerializer(job).data)


# A job's result file, whole or one byte range, and the errors of `jobs.open_result`.
_RESULT_RESPONSES = {
    (200, "application/octet-stream"): OpenApiTypes.BINARY,
    (206, "application/octet-stream"): OpenApiTypes.BINARY,
    **dict.fromkeys([403, 404, 409, 410, 416, 429], _ERROR),
}


class JobResult(PartnerView):
    required_scope = "query"

    @extend_schema(
        operation_id="get_query_job_result",
        summary="Download a finished job's result (until it expires)",
        description="Send `Range: bytes=start-end` for one part of the file (206); what is asked for is charged.",
        responses=_RESULT_RESPONSES,
    )
    def get(self, request, job_id):
        return result_response(get_job(request, job_id), request, via="api")


class JobDownload(APIView):
    """A finished job's result through its signed link: no bearer token, the link itself is the credential."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="download_query_job_result",
        summary="Download a finished job's result through its signed, expiring link",
        description=f"The link comes from the job's `links.download` and works for {jobs.RESULT_LINK_SECONDS} s.",
        auth=[],
        responses=_RESULT_RESPONSES,
    )
    def get(self, request, token):
        try:
            job = jobs.job_for_link(token)
        except Refusal as exc:  # the link is the credential: recorded without it
            record_refusal(request, exc, path=reverse("api-job-download", args=["<link>"]))
            raise
        return result_response(job, request, via="link")


def result_response(job: QueryJob, request, *, via: str) -> HttpResponse:
    """The result file, or the one byte range asked for (206); with an object store, a redirect (302) to a
    pre-signed URL of it, once checked and charged. A HEAD gets the headers only, after the same grant check
    as a GET, and is neither charged nor audited as a download."""
    if request.method == "HEAD":
        size = jobs.result_size(job)
        jobs.result_grants(job, request=request)
        response = HttpResponse(content_type=MEDIA_TYPES[job.format])
        response["Content-Length"] = str(size)
        response["Content-Disposition"] = f'attachment; filename="{job.result_path}"'
        response["Accept-Ranges"] = "bytes"
        return response
    url = jobs.presigned_result(job, request=request, via=via)
    if url is not None:
        return HttpResponseRedirect(url)
    range_header = request.headers.get("Range")
    file, part, size, settle = jobs.open_result(
        job, request=request, via=via, part_of=lambda size: byte_range(range_header, size)
    )
    return file_response(
        file, part, size, content_type=MEDIA_TYPES[job.format], filename=Path(file.name).name, on_close=settle
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
        version = dataset.latest_version()
        use = None
        if samples.for_subscribers_only(dataset, version):
            use = MeteredUse(
                request.auth_client.institution,
                [dataset],
                Mode.QUERY,
                action="catalog.sample",
                actor=by_client(request.auth_client),
                target=f"dataset:{dataset.slug}",
                request=request,
            )
            use.grants()
        try:
            limit = int(request.query_params.get("limit", samples.SAMPLE_ROWS))
        except ValueError:
            raise ApiError("limit must be a whole number.", code="invalid_request") from None
        try:
            sample = samples.sample_for(dataset, version, limit=limit, dimension=request.query_params.get("dimension"))
        except samples.SampleError as exc:
            raise ApiError(str(exc), code="invalid_request") from None
        if use is not None:
            (grant,) = use.grants()
            details = {"version": sample.version, "dimension": sample.dimension, "subscription": grant.subscription.pk}
            use.commit({}, details)
        return Response({"dataset": dataset.slug, "tier": dataset.tier, **sample.to_dict()})
