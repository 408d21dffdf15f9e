"""Every /api/v1/ route, gathered from the apps."""

from django.urls import path

from vitamin import api_views

urlpatterns = [
    path("status", api_views.get_status, name="api-status"),
]
