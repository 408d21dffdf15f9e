"""The partner's audit trail routes under /api/v1/."""

from django.urls import path

from audit import api

urlpatterns = [
    path("audit/events", api.AuditEvents.as_view(), name="api-audit-events"),
    path("audit/verify", api.VerifyAuditChain.as_view(), name="api-audit-verify"),
]
