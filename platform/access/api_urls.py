"""Subscription, plan and usage routes under /api/v1/."""

from django.urls import path

from access import api

urlpatterns = [
    path("plans", api.PlanList.as_view(), name="api-plans"),
    path("subscriptions", api.SubscriptionList.as_view(), name="api-subscriptions"),
    path("subscriptions/<int:pk>", api.SubscriptionDetail.as_view(), name="api-subscription"),
    path("subscriptions/<int:pk>/cancel", api.CancelSubscription.as_view(), name="api-subscription-cancel"),
    path("usage", api.Usage.as_view(), name="api-usage"),
]
