"""The OAuth endpoints. Only the machine endpoints (token, revoke, introspect, register) skip CSRF:
they authenticate the client on every request and never read the session."""

from __future__ import annotations

import functools

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InsecureTransportError
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.actors import by_user
from audit.models import Outcome
from audit.service import record
from institutions.access import membership
from oauth.endpoints import error_description
from oauth.metadata import issuer, server_metadata
from oauth.scopes import DELEGABLE_SCOPES, SCOPES, parse_scope
from oauth.server import authorization_server as server
from vitamin import parsers

# Parameters whose values Authlib may quote in an error description, where RFC 6749 §5.2 forbids
# '"', '\\' and non-ASCII (Authlib raises ValueError, a 500). None of them may contain such characters.
_QUOTED_PARAMETERS = ("response_type", "grant_type", "redirect_uri", "client_id", "scope", "code_challenge_method")


def _unquotable_parameter(request) -> str | None:
    for query in (request.GET, request.POST):
        for name in _QUOTED_PARAMETERS:
            for value in query.getlist(name):
                if error_description(value) != value:
                    return name
    return None


def _oauth_endpoint(view):
    """POST-only, CSRF-exempt, one transaction; malformed or plain-HTTP requests get an OAuth error, not a 500."""

    @csrf_exempt
    @require_POST
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if name := _unquotable_parameter(request):
            return JsonResponse({"error": "invalid_request", "error_description": f"Malformed {name}."}, status=400)
        try:
            with transaction.atomic():
                return view(request, *args, **kwargs)
        except InsecureTransportError as error:
            return server.handle_error_response(None, error)

    return wrapper


@_oauth_endpoint
def issue_token(request):
    return server.create_token_response(request)


@_oauth_endpoint
def revoke_token(request):
    return server.create_endpoint_response("revocation", request)


@_oauth_endpoint
def introspect_token(request):
    return server.create_endpoint_response("introspection", request)


@_oauth_endpoint
def register_client(request):
    try:
        metadata = parsers.loads(request.body or b"null")
    except ValueError:  # JsonTooDeep too: Authlib parses the body again, and would recurse
        metadata = None
    if not isinstance(metadata, dict):
        return JsonResponse(
            {"error": "invalid_client_metadata", "error_description": "The body must be a JSON object."}, status=400
        )
    return server.create_endpoint_response("client_registration", request)


@require_GET
def get_metadata(request):
    return JsonResponse(server_metadata(request))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def authorize(request):
    """The consent screen: a member lets a tool act for them, within the client's and their role's scopes."""
    if name := _unquotable_parameter(request):
        return _error_page(request, f"The request's {name} is malformed.", status=400)
    try:
        grant = server.get_consent_grant(request, end_user=request.user)
    except InsecureTransportError as error:
        return _error_page(request, error.get_error_description(), status=400)
    except OAuth2Error as error:
        if error.redirect_uri:  # the redirect URI was checked: the client hears about it
            return _with_issuer(server.handle_error_response(request, error), request)
        return _error_page(request, error.get_error_description() or error.error, status=400)

    client = grant.client
    member = membership(request.user, client.institution)
    if member is None:
        return _error_page(
            request,
            f"{client.name} belongs to {client.institution.legal_name}; only its members can authorize it.",
            status=403,
        )
    scopes = parse_scope(grant.request.scope)
    beyond_role = [scope for scope in scopes if scope not in DELEGABLE_SCOPES[member.role]]
    if beyond_role:
        return _error_page(
            request,
            gettext("As %(role)s you cannot grant: %(scopes)s.")
            % {"role": member.get_role_display().lower(), "scopes": ", ".join(beyond_role)},
            status=403,
        )
    if request.method == "GET":
        return render(
            request,
            "oauth/authorize.html",
            {"client": client, "scopes": [(scope, gettext(SCOPES[scope])) for scope in scopes], "member": member},
        )

    approved = request.POST.get("decision") == "allow"
    with transaction.atomic():
        response = server.create_authorization_response(
            request, grant_user=request.user if approved else None, grant=grant
        )
        record(
            "oauth.consent_given" if approved else "oauth.consent_refused",
            outcome=Outcome.SUCCESS if approved else Outcome.DENIED,
            **by_user(request.user, client.institution_id),
            target=f"client:{client.client_id}",
            details={"scope": " ".join(scopes)},
            request=request,
        )
    return _with_issuer(response, request)


def _with_issuer(response: HttpResponse, request) -> HttpResponse:
    """RFC 9207: tell the client which server answered, so it can detect mix-up attacks."""
    if response.has_header("Location"):
        response["Location"] = add_params_to_uri(response["Location"], {"iss": issuer(request)})
    return response


def _error_page(request, message: str, *, status: int) -> HttpResponse:
    return render(request, "oauth/authorize_error.html", {"message": message}, status=status)
