from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Subscriptions and access"

    def ready(self) -> None:
        from access.service import pinned_version_numbers
        from catalog.refresh import register_pin_provider

        # Retention keeps the files of versions that live subscriptions are pinned to.
        register_pin_provider(pinned_version_numbers)
