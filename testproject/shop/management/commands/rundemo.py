"""Set up and run the demo: migrate, make a local admin login, start a worker (restarted when
it dies, as a process supervisor would) beside the development web server."""

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from django_dbos import DBOS
from testproject.shop.demo import DEMO_WORKER
from testproject.shop.workflows import scheduled_tick

MANAGE = str(Path(__file__).resolve().parents[4] / "manage.py")


class Command(BaseCommand):
    help = "Run the django-dbos demo: a worker beside the development web server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        self._admin_login()
        if DBOS.get_schedule("demo-tick") is None:
            DBOS.create_schedule(
                schedule_name="demo-tick", workflow_fn=scheduled_tick, schedule="*/10 * * * * *"
            )
        port = options["port"]
        server = subprocess.Popen(
            [sys.executable, MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"]
        )
        worker = self._start_worker()
        time.sleep(1.5)
        self.stdout.write(
            self.style.SUCCESS(f"\nThe demo runs at http://127.0.0.1:{port}/")
            + f"\nThe admin is at http://127.0.0.1:{port}/admin/. Ctrl-C stops it.\n"
        )
        try:
            while server.poll() is None:
                if worker.poll() is not None:
                    self.stdout.write(
                        f"The worker died (exit {worker.returncode}); restarting it.", ending="\n"
                    )
                    worker = self._start_worker()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in (worker, server):
                child.terminate()
            for child in (worker, server):
                child.wait(30)

    def _start_worker(self) -> subprocess.Popen:
        """The worker keeps one executor id across restarts, so that each new one recovers
        what the last one left at once."""
        env = {**os.environ, "DBOS_EXECUTOR_ID": DEMO_WORKER}
        return subprocess.Popen([sys.executable, MANAGE, "rundbosworker"], env=env)

    def _admin_login(self) -> None:
        """Create a local admin login once, and print its password that one time."""
        users = get_user_model().objects
        if users.filter(username="admin").exists():
            self.stdout.write("Admin login: admin (its password was printed when it was made).")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(f"Admin login for this local demo: admin / {password}")
