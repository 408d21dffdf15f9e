"""Routes of this app, included from vitamin/urls.py."""

urlpatterns: list = []
