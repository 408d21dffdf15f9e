from django.contrib import admin, messages

from catalog.models import Dataset, DatasetVersion, RefreshRun
from catalog.refresh import request_refresh
from vitamin.queueing import QueueUnavailable


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    fields = ("number", "status", "row_count", "bytes", "created_at", "retired_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "tier", "update_frequency", "schedule", "is_active", "updated_at")
    list_filter = ("tier", "is_active", "theme")
    search_fields = ("slug", "title", "description")
    readonly_fields = [f.name for f in Dataset._meta.fields if f.name not in ("pseudonym_release",)]
    inlines = [VersionInline]
    actions = ["refresh_now"]

    def has_add_permission(self, request):
        return False  # datasets come from spec files (manage.py sync_datasets)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Refresh now (queue on the workers)")
    def refresh_now(self, request, queryset):
        for dataset in queryset:
            try:
                run = request_refresh(dataset, requested_by=request.user.get_username())
            except QueueUnavailable as exc:  # the run is failed with the reason; the rest would fail the same way
                self.message_user(
                    request,
                    f"{dataset.slug}: not queued, the task queue is not answering (run {exc.details['run']} is "
                    "marked failed). Try again in a few seconds.",
                    messages.ERROR,
                )
                return
            self.message_user(request, f"{dataset.slug}: refresh queued (run {run.pk}).", messages.SUCCESS)


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ("dataset", "number", "status", "row_count", "bytes", "created_at")
    list_filter = ("status", "dataset")
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RefreshRun)
class RefreshRunAdmin(admin.ModelAdmin):
    list_display = ("dataset", "status", "trigger", "rows_processed", "created_at", "started_at", "finished_at")
    list_filter = ("status", "trigger", "dataset")
    readonly_fields = [f.name for f in RefreshRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
