"""The portal page of this app, included at the site's root from vitamin/urls.py (the protocol's routes are in urls.py)."""

from django.urls import path

from sharing import pages

urlpatterns = [
    path("clients/<str:client_id>/sharing-profile/", pages.sharing_profile, name="sharing-profile"),
]
