import os

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "testproject.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A project configures OpenTelemetry here or in its settings (docs/monitoring.md); the
        # tests' worker processes do when DBOS_TEST_SPANS_FILE names a file for their spans
        # (the OpenTelemetry SDK, a dev dependency, is imported only then).
        path = os.environ.get("DBOS_TEST_SPANS_FILE")
        if path:
            from testproject.spans import export_spans_to

            export_spans_to(path)
