"""Routes of this app, included from vitamin/urls.py."""

from django.urls import path

from oauth import views

urlpatterns = [
    path("oauth/authorize", views.authorize, name="oauth-authorize"),
    path("oauth/token", views.issue_token, name="oauth-token"),
    path("oauth/revoke", views.revoke_token, name="oauth-revoke"),
    path("oauth/introspect", views.introspect_token, name="oauth-introspect"),
    path("oauth/register", views.register_client, name="oauth-register"),
    path(".well-known/oauth-authorization-server", views.get_metadata, name="oauth-metadata"),
]
