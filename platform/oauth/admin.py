"""Django admin: read-only views. Client changes go through the portal or `create_client`, so they are
audited and secrets are shown once; secret and token hashes are never displayed."""

from django.contrib import admin

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
