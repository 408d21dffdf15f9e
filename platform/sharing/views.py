"""The Delta Sharing REST endpoints under /delta-sharing/ (scope `download`), and the signed file URLs.

    GET       shares                                      GET shares/{share}
    GET       shares/{share}/schemas                      GET shares/{share}/all-tables
    GET       shares/{share}/schemas/{schema}/tables
    GET|HEAD  shares/{share}/schemas/{schema}/tables/{table}/version     Delta-Table-Version header
    GET       .../tables/{table}/metadata                 NDJSON: protocol, metaData
    POST      .../tables/{table}/query                    NDJSON: protocol, metaData, one line per file
    GET|HEAD  files/{signed token}                        the file, whole or one byte range

Errors answer in the protocol's shape, {"errorCode": ..., "message": ...}, with Vitamin's stable
code beside them; a client's mistake is never a 5xx (clients retry those for minutes).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core import signing
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from access.metered import MeteredUse
from audit.actors import by_client_id
from catalog.models import DatasetVersion
from datasets.spec import Mode
from oauth.models import Client
from sharing import files, predicates, protocol, service
from vitamin.api import PartnerView, record_refusal
from vitamin.errors import ApiError, api_exception_handler
from vitamin.ranges import byte_range, file_response
from vitamin.refusals import Kind, Refusal

_ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "INVALID_PARAMETER_VALUE",
    406: "INVALID_PARAMETER_VALUE",
    409: "INVALID_PARAMETER_VALUE",
    410: "RESOURCE_DOES_NOT_EXIST",
    415: "INVALID_PARAMETER_VALUE",
    416: "INVALID_PARAMETER_VALUE",
    429: "TOO_MANY_REQUESTS",
}
_PAGE_SALT = "vitamin.sharing.page"


def protocol_exception_handler(exc, context):
    """Vitamin's error answer, reshaped as the protocol's: same status and headers."""
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    error = response.data.get("error", {}) if isinstance(response.data, dict) else {}
    response.data = {
        "errorCode": _ERROR_CODES.get(response.status_code, "INTERNAL_ERROR"),
        "message": error.get("message", ""),
        "code": error.get("code", ""),
        "request_id": error.get("request_id", ""),
    }
    return response


class SharingView(PartnerView):
    required_scope = "download"

    def get_exception_handler(self):
        return protocol_exception_handler

    @property
    def institution_id(self) -> int:
        return self.request.auth_client.institution_id


def page(request, items: list) -> dict:
    """One page of `items` (`maxResults`, `pageToken`), with `nextPageToken` when more follow."""
    raw_max = request.query_params.get("maxResults")
    try:
        size = settings.SHARING_PAGE_MAX if raw_max in (None, "") else int(raw_max)
    except ValueError:
        raise Refusal("maxResults must be a whole number.", code="invalid_parameter") from None
    if size < 0:
        raise Refusal("maxResults must not be negative.", code="invalid_parameter")
    size = min(size or settings.SHARING_PAGE_MAX, settings.SHARING_PAGE_MAX)
    start = 0
    if request.query_params.get("pageToken"):
        try:
            start = int(signing.loads(request.query_params["pageToken"], salt=_PAGE_SALT))
        except (signing.BadSignature, ValueError, TypeError):
            raise Refusal("pageToken is not one this server issued.", code="invalid_parameter") from None
    body = {"items": items[start : start + size]}
    if start + size < len(items):
        body["nextPageToken"] = signing.dumps(start + size, salt=_PAGE_SALT)
    return body


def _share(institution_id: int) -> dict:
    return {"name": protocol.SHARE, "id": protocol.share_id(institution_id)}


def _table(institution_id: int, table: service.SharedTable) -> dict:
    return {
        "name": table.name,
        "schema": table.schema,
        "share": protocol.SHARE,
        "shareId": protocol.share_id(institution_id),
        "id": protocol.table_id(table.name),
    }


class ShareList(SharingView):
    @extend_schema(
        operation_id="sharing_list_shares", summary="Delta Sharing: the caller's shares", responses={200: dict}
    )
    def get(self, request):
        return Response(page(request, [_share(self.institution_id)]))


class ShareDetail(SharingView):
    @extend_schema(operation_id="sharing_get_share", summary="Delta Sharing: one share", responses={200: dict})
    def get(self, request, share):
        service.check_share(share)
        return Response({"share": _share(self.institution_id)})


class SchemaList(SharingView):
    @extend_schema(
        operation_id="sharing_list_schemas",
        summary="Delta Sharing: the schemas of a share (dataset themes)",
        responses={200: dict},
    )
    def get(self, request, share):
        names = service.schemas(self.institution_id, share)
        return Response(page(request, [{"name": name, "share": share} for name in names]))


class TableList(SharingView):
    @extend_schema(
        operation_id="sharing_list_tables", summary="Delta Sharing: the tables of a schema", responses={200: dict}
    )
    def get(self, request, share, schema):
        found = service.tables_in(self.institution_id, share, schema)
        return Response(page(request, [_table(self.institution_id, table) for table in found]))


class AllTables(SharingView):
    @extend_schema(
        operation_id="sharing_list_all_tables", summary="Delta Sharing: every table of a share", responses={200: dict}
    )
    def get(self, request, share):
        found = service.tables_in(self.institution_id, share)
        return Response(page(request, [_table(self.institution_id, table) for table in found]))


class _TableView(SharingView):
    def shared(self, share, schema, table) -> service.SharedTable:
        return service.table(self.institution_id, share, schema, table)


def _versioned(version: DatasetVersion, body: bytes = b"", content_type: str = protocol.NDJSON) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response[protocol.VERSION_HEADER] = str(version.number)
    response[protocol.CAPABILITIES_HEADER] = "responseformat=parquet"
    return response


class TableVersion(_TableView):
    @extend_schema(
        operation_id="sharing_get_table_version",
        summary="Delta Sharing: a table's version (Delta-Table-Version header)",
        responses={200: None},
    )
    def get(self, request, share, schema, table):
        shared = self.shared(share, schema, table)
        version = service.version_of(shared, timestamp=request.query_params.get("startingTimestamp"))
        return _versioned(version, content_type="application/json")

    def head(self, request, share, schema, table):
        return self.get(request, share, schema, table)


def _metadata(shared: service.SharedTable, version: DatasetVersion, listed: list[service.SharedFile]) -> dict:
    schema, partition_columns = service.arrow_schema(version, listed)
    return protocol.metadata_line(
        table=protocol.table_id(shared.name),
        name=shared.name,
        description=shared.dataset.description,
        schema=schema,
        partition_columns=partition_columns,
        size=sum(entry.size for entry in listed),
        files=len(listed),
    )


class TableMetadata(_TableView):
    @extend_schema(
        operation_id="sharing_get_table_metadata",
        summary="Delta Sharing: a table's protocol and metadata (NDJSON)",
        responses={200: None},
    )
    def get(self, request, share, schema, table):
        shared = self.shared(share, schema, table)
        version = service.version_of(shared)
        listed = service.files_of(version)
        return _versioned(version, protocol.ndjson([protocol.protocol_line(), _metadata(shared, version, listed)]))


class QueryBody(serializers.Serializer):
    predicateHints = serializers.ListField(child=serializers.CharField(), required=False)  # noqa: N815 - the protocol's names
    jsonPredicateHints = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
    limitHint = serializers.IntegerField(required=False, min_value=0)  # noqa: N815
    version = serializers.IntegerField(required=False, min_value=0)
    timestamp = serializers.CharField(required=False)


class TableQuery(_TableView):
    @extend_schema(
        operation_id="sharing_query_table",
        summary="Delta Sharing: a table's files, as signed URLs (NDJSON)",
        request=QueryBody,
        responses={200: None},
    )
    def post(self, request, share, schema, table):
        body = QueryBody(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        values = body.validated_data
        shared = self.shared(share, schema, table)
        version = service.version_of(shared, version=values.get("version"), timestamp=values.get("timestamp"))
        listed = service.files_of(version)
        tree = predicates.parse(values.get("jsonPredicateHints"))
        matching = [entry for entry in listed if predicates.may_match(tree, entry.partition_values)]
        chosen = service.within_limit(matching, values.get("limitHint"))
        client_id = request.auth_client.client_id
        lines = [protocol.protocol_line(), _metadata(shared, version, listed)]
        target = service.store()
        # On an S3-compatible store with keys, files go straight from the store (pre-signed URLs): the
        # whole of each file is charged and recorded now, as it cannot be later.
        presigned = target.keys is not None
        expires_ms = int((time.time() + settings.SHARING_URL_SECONDS) * 1000)
        for entry in chosen:
            if presigned:
                url = target.presigned_url(target.path(version.location, entry.path), settings.SHARING_URL_SECONDS)
            else:
                token, grant = files.issue(version.pk, entry.path, self.institution_id, client_id)
                url, expires_ms = request.build_absolute_uri(f"/delta-sharing/files/{token}"), grant.expires_at_ms
            lines.append(
                protocol.file_line(
                    url=url,
                    file_id=f"{protocol.table_id(shared.name)}-v{version.number}-{entry.path}",
                    partition_values=entry.partition_values,
                    size=entry.size,
                    rows=entry.rows,
                    expires_at_ms=expires_ms,
                )
            )
        details = {"version": version.number, "files": len(chosen), "limit_hint": values.get("limitHint")}
        charges = {}
        if presigned:
            details.update(presigned=True, bytes=sum(entry.size for entry in chosen))
            charges = {"bytes_downloaded": details["bytes"]}
        MeteredUse(
            self.institution_id,
            [shared.dataset],
            Mode.DOWNLOAD,
            action="sharing.download" if presigned else "sharing.query",
            actor=by_client_id(client_id, self.institution_id),
            target=f"dataset:{shared.name}@v{version.number}",
            request=request,
        ).commit(charges, details)
        return _versioned(version, protocol.ndjson(lines))


class FileDownload(APIView):
    """A file of a shared table through its signed URL: no bearer token, the URL is the credential."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_exception_handler(self):
        return protocol_exception_handler

    @extend_schema(
        operation_id="sharing_get_file",
        summary="Delta Sharing: a file, through its signed URL (Range supported)",
        auth=[],
        responses={200: bytes},
    )
    def get(self, request, token):
        return self._serve(request, token, head=False)

    def head(self, request, token):
        return self._serve(request, token, head=True)

    def _serve(self, request, token, *, head: bool):
        try:
            grant = files.verify(token)
            version = DatasetVersion.objects.select_related("dataset").filter(pk=grant.version_id).first()
            if (
                version is None
                or version.files_removed_at is not None
                or grant.path not in {entry["path"] for entry in version.data_files}
            ):
                raise service.not_found("This file is no longer shared.")
            if not Client.objects.filter(client_id=grant.client_id, disabled_at__isnull=True).exists():
                # a disabled client's URLs stop with it, as its tokens do
                raise Refusal("This file URL is not valid.", code="url_invalid", kind=Kind.FORBIDDEN)
        except (Refusal, ApiError) as exc:  # the URL is the credential: recorded without it
            record_refusal(request, exc, path="/delta-sharing/files/<url>")
            raise
        slug = version.dataset.slug
        use = MeteredUse(
            grant.institution_id,
            [version.dataset],
            Mode.DOWNLOAD,
            action="sharing.download",
            actor=by_client_id(grant.client_id, grant.institution_id),
            target=f"dataset:{slug}@v{version.number}",
            request=request,
        )
        details = {"version": version.number, "file": grant.path}
        use.grants(details)  # a grant revoked since the URL was issued stops it now
        handle, size = service.open_file(version, grant.path)  # the response closes it
        if head:
            handle.close()
            response = HttpResponse(content_type="application/octet-stream")
            response["Content-Length"] = str(size)
            response["Accept-Ranges"] = "bytes"
            return response
        chosen = []

        def choose_part() -> None:
            part = byte_range(request.headers.get("Range"), size)
            details.update(bytes=part.length if part else size, size=size)
            if part is not None:
                details["range"] = f"{part.start}-{part.end}"
            chosen.append(part)

        try:
            use.commit(lambda: {"bytes_downloaded": details["bytes"]}, details, check=choose_part)
        except BaseException:
            handle.close()
            raise
        charged = details["bytes"]
        return file_response(
            handle,
            chosen[0],
            size,
            content_type="application/octet-stream",
            on_close=lambda sent: use.give_back("bytes_downloaded", charged, sent, details),
        )
