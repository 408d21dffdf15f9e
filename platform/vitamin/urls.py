from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from vitamin import health

handler400 = "vitamin.errors.handler400"
handler403 = "vitamin.errors.handler403"
handler404 = "vitamin.errors.handler404"
handler500 = "vitamin.errors.handler500"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("vitamin.api_urls")),
    path("delta-sharing/", include("sharing.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the header's language switcher
    path("", include("oauth.urls")),
    path("", include("sharing.page_urls")),
    path("", include("institutions.urls")),
    path("", include("audit.urls")),
    path("", include("portal.urls")),
]
