from django.apps import AppConfig


class OauthConfig(AppConfig):
    name = "oauth"

    def ready(self) -> None:
        from oauth import receivers  # noqa: F401 - connects the signal handlers
