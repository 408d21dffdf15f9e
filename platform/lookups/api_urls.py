"""Lookup routes under /api/v1/."""

from django.urls import path

from lookups import views

urlpatterns = [
    path("datasets/<slug:slug>/lookup", views.Lookup.as_view(), name="api-dataset-lookup"),
    path("datasets/<slug:slug>/cohorts", views.Cohort.as_view(), name="api-dataset-cohorts"),
]
