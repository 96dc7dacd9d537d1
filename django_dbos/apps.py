from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjangoDBOSConfig(AppConfig):
    name = "django_dbos"
    verbose_name = "DBOS workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, conf  # noqa: F401  (registers the system checks)

        module_name = conf.user_settings().get("AUTODISCOVER", conf.DEFAULTS["AUTODISCOVER"])
        if isinstance(module_name, str) and module_name:
            autodiscover_modules(module_name)
        from . import task_runner  # noqa: F401  (the workflow that runs Django tasks)
