"""Read-only admin views of lookups: what was asked, under which consents (never an identifier)."""

from django.contrib import admin

from lookups.models import CutoffCheck, LookupConsent, LookupRequest


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ConsentInline(admin.TabularInline):
    model = LookupConsent
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in LookupConsent._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LookupRequest)
class LookupRequestAdmin(ReadOnly):
    list_display = [
        "created_at",
        "kind",
        "institution",
        "dataset",
        "version_number",
        "transaction_id",
        "items",
        "matched",
    ]
    list_filter = ["kind", "dataset"]
    search_fields = ["transaction_id", "institution__legal_name", "client_id"]
    exclude = ["answer"]
    inlines = [ConsentInline]


@admin.register(CutoffCheck)
class CutoffCheckAdmin(ReadOnly):
    list_display = ["day", "institution", "dataset", "field", "cutoff", "slot"]
    list_filter = ["day", "dataset"]
