from django.apps import AppConfig


class ChaosAppConfig(AppConfig):
    name = "chaos.chaos_app"
    label = "chaos_app"
    verbose_name = "Chaos run"
    default_auto_field = "django.db.models.BigAutoField"
