"""Portal page routes of the audit log: an institution's trail, and the staff search with its exports."""

from django.urls import path, re_path

from audit import views

urlpatterns = [
    path("audit/", views.pick_trail, name="audit-trails"),
    path("audit/search/", views.search, name="audit-search"),
    re_path(r"^audit/search/export\.(?P<fmt>jsonl|csv)$", views.export, name="audit-export"),
    path("institutions/<int:pk>/audit/", views.show_trail, name="institution-audit"),
    path("institutions/<int:pk>/audit/verify/", views.verify_trail, name="institution-audit-verify"),
]
