"""Shared fixtures: a clean engine per test, and real worker processes on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connections

from django_dbos import DBOS

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    return f"django-dbos tests on {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"


@pytest.fixture(scope="session", autouse=True)
def _engine_closed_before_teardown(django_db_setup: None) -> Iterator[None]:
    """Close the engine's threads and connections before the test database is dropped."""
    yield
    DBOS.shutdown(timeout_seconds=10)


@pytest.fixture(autouse=True)
def _fresh_engine() -> Iterator[None]:
    """Each test starts with no workflow threads or executor left over from the last one."""
    yield
    DBOS.shutdown(timeout_seconds=10)


def database_url() -> str:
    """The URL of the test database, for processes the tests start."""
    settings = connections["default"].settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


@pytest.fixture
def is_postgres() -> bool:
    return connections["default"].vendor == "postgresql"


class Processes:
    """Starts real Django processes on the test database and kills them at the end."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            DJANGO_SETTINGS_MODULE="testproject.settings",
            PYTHONPATH=str(ROOT),
            DBOS_HEARTBEAT_SECONDS="0.5",
            DBOS_EXECUTOR_TIMEOUT_SECONDS="2",
            DBOS_LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env

    def _start(self, args: list[str], name: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115
        # A session of its own: kill_all ends the process's children too (--reload's worker).
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_path = log.name  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def worker(self, *options: str, **env: str) -> subprocess.Popen[bytes]:
        """Start `manage.py rundbosworker`."""
        return self._start(
            [sys.executable, "manage.py", "rundbosworker", *options], "worker", **env
        )

    def python(self, code: str, **env: str) -> subprocess.Popen[bytes]:
        """Start a Django process (like a web process) that runs `code`."""
        script = "import django\ndjango.setup()\n" + code
        return self._start([sys.executable, "-c", script], "process", **env)

    def kill_all(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.kill_all()


@pytest.fixture
def unreachable_system_database(monkeypatch) -> Iterator[None]:
    """The system database cannot be reached: its SQLite file is in a directory that does not
    exist, or its PostgreSQL port has nothing listening (the next query reconnects, and fails)."""
    connection = connections["default"]
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent-directory/x.sqlite3")
    else:
        monkeypatch.setitem(connection.settings_dict, "PORT", 1)
    connection.close()
    yield
    connection.close()  # reconnects to the real database once the settings are restored


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"Timed out after {timeout} s waiting for {what or condition}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` need what only PostgreSQL has; on SQLite they are skipped."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL; runs in the PostgreSQL pass of .ci/run")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
