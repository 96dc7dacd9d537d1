"""The demo project under ASGI: `uvicorn testproject.asgi:application` (tests/test_asgi.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
application = get_asgi_application()
