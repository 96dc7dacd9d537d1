"""Tools to test projects that use django-dbos (docs/testing.md).

- Fixtures, from the pytest plugin this package registers (entry point `pytest11`): `dbos`
  (empty system tables, the engine stopped after the test), `dbos_worker` (a worker on a thread:
  `drain()`), `dbos_clock` (`frozen()`, `advance(days=3)`).
- Crashes: `simulate_crash(workflow, *args, at_step=N)`, `recover()`, `crash_at_every_step(...)`.
- Replay: `assert_replays(workflow_id)` and `replay(workflow_id)`, also
  `manage.py dbos workflow replay ID`.

Importing this package imports neither pytest nor the models: each name loads on first use.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clock import ClockControl, FrozenClock
    from .crash import CrashRun, crash_at_every_step, recover, simulate_crash
    from .replayer import Replay, ReplayMismatch, assert_replays, replay
    from .worker import InProcessWorker

_MODULES = {
    "ClockControl": "clock",
    "FrozenClock": "clock",
    "CrashRun": "crash",
    "crash_at_every_step": "crash",
    "recover": "crash",
    "simulate_crash": "crash",
    "Replay": "replayer",
    "ReplayMismatch": "replayer",
    "assert_replays": "replayer",
    "replay": "replayer",
    "InProcessWorker": "worker",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'django_dbos.testing' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)


__all__ = [
    # Crashes
    "simulate_crash",
    "recover",
    "crash_at_every_step",
    "CrashRun",
    # Replay
    "assert_replays",
    "replay",
    "Replay",
    "ReplayMismatch",
    # Behind the fixtures
    "ClockControl",
    "FrozenClock",
    "InProcessWorker",
]
