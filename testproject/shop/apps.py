from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "testproject.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A project configures OpenTelemetry here or in its settings (docs/monitoring.md); the
        # tests' worker processes do when DBOS_TEST_SPANS_FILE names a file for their spans.
        from testproject.spans import configure_from_environment

        configure_from_environment()
