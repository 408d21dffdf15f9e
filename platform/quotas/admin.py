"""Read-only admin views: usage is written by the quota service only, never by hand."""

from __future__ import annotations

from django.contrib import admin

from quotas.models import QuotaCounter, UsageDaily


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UsageDaily)
class UsageDailyAdmin(ReadOnlyAdmin):
    list_display = ["day", "subject", "metric", "amount"]
    list_filter = ["metric", "day"]
    search_fields = ["subject"]
    date_hierarchy = "day"
    ordering = ["-day", "subject", "metric"]


@admin.register(QuotaCounter)
class QuotaCounterAdmin(ReadOnlyAdmin):
    list_display = ["subject", "metric", "window", "window_start", "window_end", "used"]
    list_filter = ["metric", "window"]
    search_fields = ["subject"]
    ordering = ["-window_start", "subject", "metric"]
