from django.apps import AppConfig


class GrantsConfig(AppConfig):
    name = "grants"
    verbose_name = "Subscriptions and grants"

    def ready(self) -> None:
        from catalog.refresh import register_pin_provider
        from grants.service import pinned_version_numbers

        # Retention keeps the files of versions that live subscriptions are pinned to.
        register_pin_provider(pinned_version_numbers)
