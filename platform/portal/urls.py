from django.urls import path

from portal import catalog_views, review_views, staff_usage_views, subscription_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("catalog/", catalog_views.list_datasets, name="catalog"),
    path("catalog/<slug:slug>/", catalog_views.show_dataset, name="dataset"),
    path("catalog/<slug:slug>/request/", catalog_views.request_access, name="request-access"),
    path("subscriptions/", subscription_views.list_subscriptions, name="subscriptions"),
    path("subscriptions/review/", review_views.review_subscriptions, name="subscription-review"),
    path("subscriptions/review/decide/", review_views.decide_subscriptions, name="subscription-decide"),
    path("subscriptions/<int:pk>/", subscription_views.show_subscription, name="subscription"),
    path("staff/usage/", staff_usage_views.show_usage, name="staff-usage"),
    path("subscriptions/<int:pk>/cancel/", subscription_views.cancel_subscription, name="cancel-subscription"),
]
