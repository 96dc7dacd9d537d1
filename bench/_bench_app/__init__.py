"""The benchmark workflows as a Django app (see ``_bench_settings.py``): its ``workflows``
module declares them, so that ``rundbosworker`` processes find them by autodiscovery."""
