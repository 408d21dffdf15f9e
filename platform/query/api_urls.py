"""Query routes under /api/v1/."""

from django.urls import path

from query import views

urlpatterns = [
    path("query", views.RunQuery.as_view(), name="api-query"),
    path("jobs", views.JobList.as_view(), name="api-jobs"),
    path("jobs/<uuid:job_id>", views.JobDetail.as_view(), name="api-job"),
    path("jobs/<uuid:job_id>/result", views.JobResult.as_view(), name="api-job-result"),
    path("job-results/<str:token>", views.JobDownload.as_view(), name="api-job-download"),
    path("datasets/<slug:slug>/sample", views.DatasetSample.as_view(), name="api-dataset-sample"),
]
