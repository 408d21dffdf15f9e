"""Delta Sharing routes, included under /delta-sharing/ from vitamin/urls.py."""

from django.urls import path

from sharing import views

_TABLE = "shares/<str:share>/schemas/<str:schema>/tables/<str:table>"

urlpatterns = [
    path("shares", views.ShareList.as_view(), name="sharing-shares"),
    path("shares/<str:share>", views.ShareDetail.as_view(), name="sharing-share"),
    path("shares/<str:share>/schemas", views.SchemaList.as_view(), name="sharing-schemas"),
    path("shares/<str:share>/all-tables", views.AllTables.as_view(), name="sharing-all-tables"),
    path("shares/<str:share>/schemas/<str:schema>/tables", views.TableList.as_view(), name="sharing-tables"),
    path(f"{_TABLE}/version", views.TableVersion.as_view(), name="sharing-table-version"),
    path(f"{_TABLE}/metadata", views.TableMetadata.as_view(), name="sharing-table-metadata"),
    path(f"{_TABLE}/query", views.TableQuery.as_view(), name="sharing-table-query"),
    path("files/<str:token>", views.FileDownload.as_view(), name="sharing-file"),
]
