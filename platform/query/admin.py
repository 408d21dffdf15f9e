from django.contrib import admin

from query.models import QueryJob


@admin.register(QueryJob)
class QueryJobAdmin(admin.ModelAdmin):
    list_display = ("id", "institution", "client_id", "state", "format", "rows_written", "created_at", "finished_at")
    list_filter = ("state", "format")
    search_fields = ("id", "client_id", "sql")
    readonly_fields = [field.name for field in QueryJob._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
