"""Every /api/v1/ route, gathered from the apps."""

from django.urls import include, path

from vitamin import api_views

urlpatterns = [
    path("status", api_views.get_status, name="api-status"),
    path("", include("catalog.api_urls")),
    path("", include("access.api_urls")),
    path("", include("query.api_urls")),
    path("", include("lookups.api_urls")),
    path("", include("audit.api_urls")),
]
