"""Django admin: read-only views, and the clients' kill switch as actions. Client changes go through the
portal or `oauth.clients`, so they are audited and secrets are shown once; secret and token hashes are
never displayed."""

from django.contrib import admin, messages

from oauth import clients
from oauth.models import Client, RegistrationToken, Token


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(ReadOnlyAdmin):
    list_display = ["name", "client_id", "institution", "token_endpoint_auth_method", "created_at", "disabled_at"]
    list_filter = ["token_endpoint_auth_method", "dynamically_registered"]
    search_fields = ["name", "client_id", "institution__legal_name"]
    exclude = ["secret_hash", "previous_secret_hash"]
    actions = ["disable_clients", "enable_clients"]

    @admin.action(description="Disable selected clients (revokes their tokens)")
    def disable_clients(self, request, queryset):
        for client in queryset.select_related("institution").filter(disabled_at__isnull=True):
            clients.disable_client(client, by=request.user, request=request)
        self.message_user(request, "Disabled; their tokens are refused from the next request.", messages.SUCCESS)

    @admin.action(description="Enable selected clients")
    def enable_clients(self, request, queryset):
        for client in queryset.select_related("institution").filter(disabled_at__isnull=False):
            clients.enable_client(client, by=request.user, request=request)
        self.message_user(request, "Enabled: they can get new tokens.", messages.SUCCESS)


@admin.register(Token)
class TokenAdmin(ReadOnlyAdmin):
    list_display = ["pk", "client", "user", "grant_type", "scope", "issued_at", "access_expires_at", "revoked_at"]
    list_filter = ["grant_type", "revoked_reason"]
    search_fields = ["client__client_id", "user__username"]
    exclude = ["access_token_hash", "refresh_token_hash"]


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(ReadOnlyAdmin):
    list_display = ["pk", "institution", "scope", "created_at", "expires_at", "used_at", "client"]
    exclude = ["token_hash"]
