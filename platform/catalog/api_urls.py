"""Catalog routes under /api/v1/."""

from django.urls import path

from catalog import api

urlpatterns = [
    path("datasets", api.DatasetList.as_view(), name="api-datasets"),
    path("datasets/<slug:slug>", api.DatasetDetail.as_view(), name="api-dataset"),
    path("datasets/<slug:slug>/versions", api.VersionList.as_view(), name="api-dataset-versions"),
    path("datasets/<slug:slug>/schema", api.DatasetSchema.as_view(), name="api-dataset-schema"),
]
