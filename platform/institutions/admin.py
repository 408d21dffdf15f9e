"""Django admin: a read-mostly view. Status changes go through the portal's review page or the
management commands, so that each one gets its history row, audit event and token revocation."""

from django.contrib import admin

from institutions.models import Institution, InstitutionStatusChange, Invitation, Member


class StatusChangeInline(admin.TabularInline):
    model = InstitutionStatusChange
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "changed_by", "reason", "changed_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class MemberInline(admin.TabularInline):
    model = Member
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Institution)
class InstitutionAdmin(admin.ModelAdmin):
    list_display = ["legal_name", "type", "credit_code", "status", "created_at"]
    list_filter = ["status", "type"]
    search_fields = ["legal_name", "credit_code", "contact_email"]
    readonly_fields = ["status", "applicant", "created_at"]
    inlines = [MemberInline, StatusChangeInline]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["user", "institution", "role", "joined_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "institution__legal_name"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "institution", "role", "created_at", "accepted_at"]
    search_fields = ["email", "institution__legal_name"]
    readonly_fields = ["accepted_at", "accepted_by", "created_at"]
