from django.apps import AppConfig


class OauthConfig(AppConfig):
    name = "oauth"

    def ready(self) -> None:
        from oauth import receivers, schema  # noqa: F401 - connects signal handlers; registers the OpenAPI scheme
