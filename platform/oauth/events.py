"""The Django request behind an Authlib request, for audit events of the OAuth endpoints."""

from __future__ import annotations


def http_request_of(oauth_request):
    """The Django request behind an Authlib request (for the caller's IP and request id), if any."""
    return getattr(oauth_request, "_request", None)
