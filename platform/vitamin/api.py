"""The base of every partner API view (catalog, subscriptions, queries, samples).

`PartnerView` and `PartnerListView`: bearer token, a required scope, one pagination style,
and an `api.denied` audit event for every request refused before the view runs.
"""

from __future__ import annotations

from rest_framework.exceptions import APIException
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.views import APIView

from audit.actors import by_system
from audit.models import Outcome
from audit.service import record
from oauth.authentication import BearerTokenAuthentication
from oauth.permissions import HasScope
from vitamin import parsers
from vitamin.errors import ApiError, error_code, status_of
from vitamin.refusals import Refusal


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


def record_refusal(request, exc: APIException | Refusal, *, path: str | None = None) -> None:
    """Audit a refused API request as `api.denied`: its code, status, method and path (pass `path` when
    the real one carries a credential), and the required scope or the token's `reason` when the
    refusal names them.

    The actor is the token's client when the token was valid, else unknown (a `system` event with
    no actor id): neither the token nor any header is recorded.
    """
    details = {
        "code": error_code(exc),
        "status": status_of(exc) if isinstance(exc, Refusal) else exc.status_code,
        "method": request.method,
        "path": path or request.path,
    }
    if isinstance(exc, ApiError) and isinstance(exc.details, dict):
        details.update({key: exc.details[key] for key in ("required_scope", "reason") if key in exc.details})
    actor = {} if getattr(request, "auth_client", None) is not None else by_system()
    record("api.denied", outcome=Outcome.DENIED, details=details, request=request, **actor)


class PartnerListView(PartnerView, ListAPIView):
    """A paginated list for partners: define get_queryset (one query per page, whatever its length)."""

    pagination_class = Pages
