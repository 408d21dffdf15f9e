from django.urls import path

from portal import (
    catalog_views,
    review_views,
    staff_usage_views,
    staff_views,
    subscription_views,
    views,
    workbench_views,
)

urlpatterns = [
    path("", views.home, name="home"),
    path("catalog/", catalog_views.list_datasets, name="catalog"),
    path("catalog/<slug:slug>/", catalog_views.show_dataset, name="dataset"),
    path("catalog/<slug:slug>/request/", catalog_views.request_access, name="request-access"),
    path("subscriptions/", subscription_views.list_subscriptions, name="subscriptions"),
    path("subscriptions/review/", review_views.review_subscriptions, name="subscription-review"),
    path("subscriptions/review/decide/", review_views.decide_subscriptions, name="subscription-decide"),
    path("institutions/review/decide/", review_views.decide_institutions, name="institution-decide"),
    path("subscriptions/<int:pk>/", subscription_views.show_subscription, name="subscription"),
    path("staff/usage/", staff_usage_views.show_usage, name="staff-usage"),
    path("workbench/", workbench_views.workbench_page, name="workbench"),
    path("workbench/export", workbench_views.export_result, name="workbench-export"),
    path("workbench/jobs", workbench_views.submit_job, name="workbench-jobs"),
    path("workbench/jobs/<uuid:job_id>/", workbench_views.show_job, name="workbench-job"),
    path("workbench/jobs/<uuid:job_id>/cancel", workbench_views.cancel_job, name="workbench-job-cancel"),
    path("workbench/jobs/<uuid:job_id>/result", workbench_views.job_result, name="workbench-job-result"),
    path("workbench/saved", workbench_views.save_query, name="workbench-save"),
    path("workbench/saved/<uuid:pk>/", workbench_views.saved_query, name="workbench-saved"),
    path("subscriptions/<int:pk>/cancel/", subscription_views.cancel_subscription, name="cancel-subscription"),
    path("staff/", staff_views.show_staff_home, name="staff-home"),
    path("staff/datasets/<slug:slug>/", staff_views.show_dataset_operations, name="staff-dataset"),
    path("staff/datasets/<slug:slug>/refresh/", staff_views.refresh_dataset_now, name="staff-refresh"),
    path("staff/refreshes/<int:pk>/progress/", staff_views.show_refresh_progress, name="staff-refresh-progress"),
    path("favicon.ico", views.favicon, name="favicon"),
]
