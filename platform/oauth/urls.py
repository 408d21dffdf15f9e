"""Routes of this app, included from vitamin/urls.py: the OAuth endpoints and the portal pages of an institution's clients."""

from django.urls import path

from oauth import pages as client_pages
from oauth import views

urlpatterns = [
    path("oauth/authorize", views.authorize, name="oauth-authorize"),
    path("oauth/token", views.issue_token, name="oauth-token"),
    path("oauth/revoke", views.revoke_token, name="oauth-revoke"),
    path("oauth/introspect", views.introspect_token, name="oauth-introspect"),
    path("oauth/register", views.register_client, name="oauth-register"),
    path(".well-known/oauth-authorization-server", views.get_metadata, name="oauth-metadata"),
    path("institutions/<int:pk>/clients/", client_pages.list_clients, name="clients"),
    path("institutions/<int:pk>/clients/new/", client_pages.new_client, name="new-client"),
    path(
        "institutions/<int:pk>/registration-tokens/", client_pages.new_registration_token, name="new-registration-token"
    ),
    path("clients/<str:client_id>/", client_pages.show_client, name="client"),
    path("clients/<str:client_id>/rotate-secret/", client_pages.rotate_client_secret, name="rotate-client-secret"),
    path("clients/<str:client_id>/revoke-tokens/", client_pages.revoke_client_tokens, name="revoke-client-tokens"),
    path("clients/<str:client_id>/end-overlap/", client_pages.end_secret_overlap, name="end-secret-overlap"),
    path("clients/<str:client_id>/disable/", client_pages.switch_client, {"enabled": False}, name="disable-client"),
    path("clients/<str:client_id>/enable/", client_pages.switch_client, {"enabled": True}, name="enable-client"),
]
