"""The registered workflows, steps and transactions, by name."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from .. import conf
from ..errors import DBOSConfigurationError, DBOSNotRegisteredError


class Options(TypedDict, total=False):
    """The options of the decorators, each kind its own."""

    # @DBOS.workflow()
    max_recovery_attempts: int | None
    http: bool
    # @DBOS.step()
    retries_allowed: bool
    interval_seconds: float
    max_attempts: int
    backoff_rate: float
    max_interval_seconds: float
    # @DBOS.transaction()
    isolation_level: str | None
    database: str | None


@dataclass(frozen=True)
class Registered:
    """A function known to the engine, with the options of its decorator."""

    kind: str  # "workflow", "step" or "transaction"
    name: str
    func: Callable[..., Any]
    options: Options = field(default_factory=Options)

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def origin(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


@dataclass(frozen=True)
class QueueSpec:
    """A queue as declared in code: its name and flow-control limits."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_seconds: float | None = None
    priority_enabled: bool = False
    partition_queue: bool = False


# The names of a queue's limits: QueueSpec's fields after its name, and the columns of its row.
QUEUE_LIMITS = tuple(field.name for field in dataclasses.fields(QueueSpec) if field.name != "name")


_registered: dict[str, Registered] = {}
_queues: dict[str, QueueSpec] = {}
_schedules: dict[str, str] = {}  # workflow name -> cron, from @DBOS.scheduled
_version: str | None = None


def default_name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def register(
    kind: str, func: Callable[..., Any], name: str | None, **options: Unpack[Options]
) -> Registered:
    """Register a function under its name; a second, different function of that name is an error."""
    entry = Registered(kind, name or default_name(func), func, options)
    existing = _registered.get(entry.name)
    if existing is not None and existing.origin != entry.origin:
        raise DBOSConfigurationError(
            f"Two functions are registered as {entry.name!r}: {existing.origin} and "
            f"{entry.origin}. Give one of them another name= in its decorator."
        )
    _registered[entry.name] = entry
    return entry


def get_workflow(name: str) -> Registered:
    entry = _registered.get(name)
    if entry is None or entry.kind != "workflow":
        raise DBOSNotRegisteredError(
            f"No workflow is registered as {name!r}. Check the name, and that the module "
            "declaring it is imported (a `workflows` module of an installed app is)."
        )
    return entry


def is_async_workflow(name: str) -> bool:
    entry = _registered.get(name)
    return entry is not None and entry.is_async


def register_queue(spec: QueueSpec) -> QueueSpec:
    """Register a queue; declaring one name twice with other limits is an error."""
    existing = _queues.get(spec.name)
    if existing is not None and existing != spec:
        raise DBOSConfigurationError(
            f"Queue {spec.name!r} is declared twice with different limits: {existing} and "
            f"{spec}. Declare each queue once, in a workflows module."
        )
    _queues[spec.name] = spec
    return spec


def get_queue(name: str) -> QueueSpec:
    spec = _queues.get(name)
    if spec is None:
        raise DBOSNotRegisteredError(
            f"No queue is registered as {name!r}. Declare it with Queue({name!r}, ...) in a "
            "workflows module."
        )
    return spec


def queues() -> list[QueueSpec]:
    return list(_queues.values())


def register_schedule(workflow_name: str, cron: str) -> None:
    """Schedule a workflow from code; the cron is checked by `manage.py check`, not here."""
    _schedules[workflow_name] = cron


def schedules() -> dict[str, str]:
    return dict(_schedules)


def workflows() -> list[Registered]:
    return [entry for entry in _registered.values() if entry.kind == "workflow"]


def application_version() -> str:
    """Return DBOS["APPLICATION_VERSION"], or a hash of the registered workflows' source.

    The hash is taken once, on first use, so that every workflow of this process carries the same
    version; workers only recover workflows of their own version.
    """
    global _version
    configured = conf.get("APPLICATION_VERSION")
    if configured:
        return str(configured)
    if _version is None:
        digest = hashlib.sha256()
        for entry in sorted(_registered.values(), key=lambda e: e.name):
            digest.update(entry.name.encode())
            try:
                digest.update(inspect.getsource(entry.func).encode())
            except (OSError, TypeError):
                digest.update(entry.origin.encode())
        _version = digest.hexdigest()[:16]
    return _version
