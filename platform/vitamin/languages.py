"""Which language a request is answered in.

Portal pages follow the visitor: the language chosen with the header's switcher (Django's
`set_language`, kept in a cookie), else the browser's Accept-Language, else English
(settings.LANGUAGES, docs/portal.md "Languages"). The machine-facing paths never do: the
REST API, the Delta Sharing protocol and OAuth's JSON endpoints answer in English whatever the
client sends, because their messages sit beside stable error codes as part of the contract, and
Django's and DRF's own messages would otherwise arrive translated.
"""

from __future__ import annotations

from django.conf import settings
from django.middleware.locale import LocaleMiddleware
from django.utils import translation

CONTRACT_PATH_PREFIXES = (
    "/api/",
    "/delta-sharing/",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/register",
    "/.well-known/",
)


def speaks_contract(path: str) -> bool:
    """True for a path whose answers are an API contract, always in English."""
    return path.startswith(CONTRACT_PATH_PREFIXES)


class PageLocaleMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware for pages; English, and no Vary: Accept-Language, for the contract paths."""

    def process_request(self, request):
        if speaks_contract(request.path_info):
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = translation.get_language()
            return
        super().process_request(request)

    def process_response(self, request, response):
        if speaks_contract(request.path_info):
            return response
        return super().process_response(request, response)
