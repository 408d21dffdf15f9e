"""Read-only audit search for platform admins: filter and look, never add, change or delete."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("seq", "timestamp", "actor_type", "actor_id", "institution", "action", "target", "outcome")
    list_filter = ("actor_type", "outcome", "action", "institution", "actor_id")
    search_fields = ("action", "actor_id", "institution", "target", "request_id", "ip", "details")
    date_hierarchy = "timestamp"
    # A full COUNT(*) of a large log on every page is slow and adds nothing here.
    show_full_result_count = False
    list_per_page = 100
    fields = (
        "seq",
        "timestamp",
        "actor_type",
        "actor_id",
        "institution",
        "action",
        "target",
        "outcome",
        "formatted_details",
        "ip",
        "request_id",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields

    @admin.display(description="details")
    def formatted_details(self, event: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
