"""Django's Tasks framework on DBOSTaskBackend: each task a durable workflow on a DBOS queue.

The same tests run on Django 6 (`django.tasks`) and on Django 5.2 (the django-tasks backport).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_dbos import DBOS
from django_dbos.models import Queue as QueueRow
from django_dbos.models import WorkflowStatus as WorkflowRow
from django_dbos.task_runner import TASK_WORKFLOW, check_task_backends
from django_dbos.tasks import DBOSTaskBackend
from testproject.shop.models import LedgerEntry, Order
from testproject.shop.tasks import confirm_order, crash_on_first_attempt

from .conftest import ROOT, wait_until
from .inprocess_worker import running_worker

try:  # Django 6
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task, task_backends
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started

pytestmark = pytest.mark.django_db(transaction=True)

_lock = threading.Lock()
ran: list[str] = []


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def fail(message: str) -> None:
    raise ValueError(message)


@task(queue_name="tasks-serial")
def note(label: str) -> str:
    with _lock:
        ran.append(label)
    return label


@task(takes_context=True)
def describe_attempt(context: TaskContext, label: str) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "label": label}


gate = threading.Event()
broken = threading.Event()


@task(takes_context=True)
def wait_for_gate(context: TaskContext) -> int:
    gate.wait(30)
    return context.attempt


@task()
def fail_while_broken() -> str:
    if broken.is_set():
        raise RuntimeError("broken")
    return "fixed"


@DBOS.workflow()
def plain_workflow() -> int:
    return 1


@DBOS.step()
def double(value: int) -> int:
    return value * 2


@DBOS.transaction()
def write_ledger(reference: str, amount: int) -> int:
    return LedgerEntry.objects.create(reference=reference, amount=amount).pk


@task()
def book(reference: str, amount: int) -> int:
    """A task that is a full workflow: a step, then a transaction."""
    return write_ledger(reference, double(amount))


@task()
def returns_a_set() -> set[int]:
    return {1}


def not_a_task() -> None:
    pass


renamed = task()(not_a_task)  # found at its module path is the function, not the task


def worker() -> Any:
    return running_worker(recovery=False, scheduler=False)


def finished(result: TaskResult, timeout: float = 30) -> TaskResult:
    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(done, timeout, f"task {result.id} to finish")
    return result


def task_count() -> int:
    return WorkflowRow.objects.filter(name=TASK_WORKFLOW).count()


@pytest.fixture
def clear_ran() -> None:
    with _lock:
        ran.clear()


# The backend --------------------------------------------------------------------------------


def test_the_backend_says_what_it_supports():
    backend = task_backends["default"]
    assert isinstance(backend, DBOSTaskBackend)
    assert backend.supports_defer
    assert backend.supports_priority
    assert backend.supports_get_result
    assert not backend.supports_async_task


def test_a_task_can_be_declared_before_the_app_registry_is_ready():
    """The framework instantiates the backend at @task, maybe while models are still loading."""
    code = """
try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

def early() -> None:
    pass

early = task()(early)
import django
django.setup()
print(type(early.get_backend()).__name__)
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "DBOSTaskBackend", done.stderr


def test_an_enqueued_task_is_ready_until_a_worker_runs_it():
    result = add.enqueue(2, 3)

    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "default")
    assert result.task is add
    stored = add.get_result(result.id)
    assert stored.status == TaskResultStatus.READY
    assert stored.enqueued_at == DBOS.get_workflow_status(result.id).created_at
    assert (stored.started_at, stored.finished_at, stored.worker_ids) == (None, None, [])
    with pytest.raises(ValueError, match="not finished"):
        _ = stored.return_value

    with worker():
        finished(result)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == []
    status = DBOS.get_workflow_status(result.id)
    assert (status.name, status.queue_name) == (TASK_WORKFLOW, "default")
    assert result.worker_ids == [status.executor_id]
    assert result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


def test_a_running_task_is_running():
    result = wait_for_gate.enqueue()
    try:
        with worker():
            wait_until(lambda: wait_for_gate.get_result(result.id).status == "RUNNING")
            running = wait_for_gate.get_result(result.id)
            gate.set()
            finished(result)
    finally:
        gate.clear()

    assert running.started_at is not None
    assert running.finished_at is None
    assert running.worker_ids == result.worker_ids
    assert result.return_value == 1


def test_a_failing_task_is_failed_with_its_exception_and_traceback():
    result = fail.enqueue("card declined")
    with worker():
        finished(result)

    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class is ValueError
    assert error.exception_class_path == "builtins.ValueError"
    assert "card declined" in error.traceback
    assert "in fail" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_a_result_that_is_not_json_fails_the_task():
    result = returns_a_set.enqueue()
    with worker():
        finished(result)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is TypeError


def test_a_cancelled_task_is_failed():
    result = add.enqueue(1, 1)
    DBOS.cancel_workflow(result.id)

    result.refresh()

    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class.__name__ == "DBOSAwaitedWorkflowCancelledError"
    assert result.finished_at is not None


def test_a_failed_task_resumed_runs_again_under_its_id():
    broken.set()
    result = fail_while_broken.enqueue()
    try:
        with worker():
            finished(result)
    finally:
        broken.clear()
    assert result.status == TaskResultStatus.FAILED

    DBOS.resume_workflow(result.id)
    result.refresh()
    assert result.status == TaskResultStatus.READY
    with worker():
        finished(result)

    assert (result.status, result.return_value, result.errors) == ("SUCCESSFUL", "fixed", [])
    assert result.attempts == 1


def test_results_are_found_by_id_only_for_tasks():
    with pytest.raises(TaskResultDoesNotExist):
        add.get_backend().get_result("no-such-task")

    handle = DBOS.start_workflow(plain_workflow)
    handle.get_result(timeout=10)
    with pytest.raises(TaskResultDoesNotExist):
        add.get_backend().get_result(handle.workflow_id)

    other = fail.enqueue("x")
    with pytest.raises(TaskResultMismatch):
        add.get_result(other.id)


def test_async_enqueue_and_get_result():
    async def enqueue_and_read() -> tuple[TaskResult, TaskResult]:
        result = await add.aenqueue(20, 22)
        return result, await add.aget_result(result.id)

    result, stored = async_to_sync(enqueue_and_read)()
    assert stored.id == result.id
    assert stored.status == TaskResultStatus.READY

    def refreshed() -> bool:
        async_to_sync(stored.arefresh)()
        return stored.is_finished

    with worker():
        wait_until(refreshed)
    assert stored.return_value == 42


# Queues, priorities, delays -------------------------------------------------------------------


def test_a_task_runs_on_the_dbos_queue_of_its_queue_name_with_the_declared_limits():
    result = add.using(queue_name="notifications").enqueue(1, 2)
    with worker():  # a worker writes the limits declared in OPTIONS when it starts
        finished(result)

    assert DBOS.get_workflow_status(result.id).queue_name == "notifications"
    assert result.task.queue_name == add.get_result(result.id).task.queue_name == "notifications"
    row = QueueRow.objects.get(name="notifications")
    assert (row.concurrency, row.rate_limit, row.rate_period_seconds) == (4, 10, 60)
    assert row.priority_enabled


def test_priority_maps_onto_dbos_priority_and_the_highest_runs_first(clear_ran):
    low = note.using(priority=-100).enqueue("low")
    default = note.enqueue("default")
    high = note.using(priority=100).enqueue("high")

    assert [DBOS.get_workflow_status(r.id).priority for r in (low, default, high)] == [201, 101, 1]
    assert note.get_result(high.id).task.priority == 100

    with worker():
        for result in (low, default, high):
            finished(result)

    assert ran == ["high", "default", "low"]  # one at a time: "tasks-serial" has concurrency 1


def test_run_after_delays_the_task():
    run_after = timezone.now() + datetime.timedelta(seconds=1.5)
    result = add.using(run_after=run_after).enqueue(1, 1)

    with worker():
        finished(result)

    assert result.started_at >= run_after
    stored_run_after = add.get_result(result.id).task.run_after
    assert abs(stored_run_after - run_after) < datetime.timedelta(seconds=0.5)


def test_a_task_that_takes_context_gets_its_attempt_and_result():
    result = describe_attempt.enqueue("first")
    with worker():
        finished(result)
    assert result.return_value == {"attempt": 1, "id": result.id, "label": "first"}


# Durability --------------------------------------------------------------------------------


def test_a_task_is_a_workflow_whose_steps_and_transactions_are_recorded():
    result = book.enqueue("order-7", 21)
    with worker():
        finished(result)

    assert result.return_value == LedgerEntry.objects.get(reference="order-7").pk
    steps = DBOS.list_workflow_steps(result.id)
    assert [(step.function_id, step.function_name.rsplit(".", 1)[-1]) for step in steps] == [
        (1, "double"),
        (2, "write_ledger"),
    ]
    assert steps[0].output == 42


def test_a_task_killed_with_its_worker_runs_again_on_another(processes):
    """A worker process dies (kill -9) in the middle of a task; a second worker recovers it."""
    result = crash_on_first_attempt.enqueue()
    first = processes.worker("--no-scheduler")
    assert first.wait(60) == -9
    processes.worker("--no-scheduler")

    finished(result, timeout=60)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2
    assert result.attempts == 2
    assert result.worker_ids == ["unknown", DBOS.get_workflow_status(result.id).executor_id]


# Transactions ------------------------------------------------------------------------------


class Abort(Exception):
    pass


def test_a_task_enqueued_in_a_rolled_back_transaction_does_not_exist():
    with pytest.raises(Abort), transaction.atomic():
        order = Order.objects.create()
        result = confirm_order.enqueue(order.pk)
        raise Abort

    with pytest.raises(TaskResultDoesNotExist):
        confirm_order.get_result(result.id)
    assert task_count() == 0


def test_a_task_enqueued_in_a_committed_transaction_runs_once():
    with worker():
        with transaction.atomic():
            order = Order.objects.create()
            result = confirm_order.enqueue(order.pk)
            time.sleep(0.5)
            # The worker cannot see the task before the commit (this connection can).
            assert confirm_order.get_result(result.id).status == TaskResultStatus.READY
        finished(result)

    assert result.return_value == "confirmed"
    assert Order.objects.get(pk=order.pk).status == "confirmed"
    assert DBOS.get_workflow_status(result.id).recovery_attempts == 0
    assert task_count() == 1


# Bad input ---------------------------------------------------------------------------------


def test_bad_tasks_are_refused_with_the_frameworks_exception():
    with pytest.raises(InvalidTask, match="not valid for backend"):
        add.using(queue_name="unknown")
    with pytest.raises(InvalidTask, match="priority"):
        add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        add.using(run_after=datetime.datetime(2030, 1, 1))

    def local_function() -> None:
        pass

    with pytest.raises(InvalidTask, match="module level"):
        task()(local_function)


def test_bad_enqueues_raise_invalid_task_and_write_nothing():
    with pytest.raises(InvalidTask, match="JSON-serializable"):
        add.enqueue(object(), 1)
    with pytest.raises(InvalidTask, match="JSON-serializable"):
        add.enqueue(1, b"\xff")
    with pytest.raises(InvalidTask, match="cannot be found by a worker"):
        renamed.enqueue()

    assert task_count() == 0


# Signals and checks --------------------------------------------------------------------------


def test_the_frameworks_signals_are_sent():
    seen: list[tuple[str, TaskResult, str]] = []  # the status as sent (a result may change)

    def record(signal_name: str) -> Any:
        def receiver(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
            seen.append((signal_name, task_result, task_result.status))

        return receiver

    receivers = {
        task_enqueued: record("enqueued"),
        task_started: record("started"),
        task_finished: record("finished"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, sender=DBOSTaskBackend)
    try:
        succeeding, failing = add.enqueue(1, 2), fail.enqueue("no")
        with worker():
            finished(succeeding)
            finished(failing)
            wait_until(lambda: len(seen) == 6)
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver, sender=DBOSTaskBackend)

    def sent(result: TaskResult) -> list[tuple[str, str]]:
        return [(name, status) for name, sent, status in seen if sent.id == result.id]

    assert sent(succeeding) == [
        ("enqueued", "READY"),
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
    ]
    assert sent(failing)[-1] == ("finished", "FAILED")
    started = next(sent for name, sent, _ in seen if name == "started" and sent.id == succeeding.id)
    assert started.started_at == succeeding.started_at
    assert started.worker_ids == succeeding.worker_ids
    last = {sent.id: sent for name, sent, _ in seen if name == "finished"}
    assert last[succeeding.id].return_value == 3
    assert last[succeeding.id].finished_at >= succeeding.finished_at
    (error,) = last[failing.id].errors
    assert error.exception_class is ValueError
    assert error.traceback == failing.errors[0].traceback


def dbos_tasks(**params: Any) -> dict[str, Any]:
    return {"default": {"BACKEND": "django_dbos.tasks.DBOSTaskBackend", **params}}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"OPTIONS": {"queue": {}}}, 'only key is "queues"'),
        ({"OPTIONS": {"queues": {"tt-a": {"concurency": 2}}}}, "dict of limits"),
        ({"QUEUES": [], "OPTIONS": {"queues": {"tt-b": {"concurrency": 0}}}}, "positive integer"),
        ({"QUEUES": ["tt-c"], "OPTIONS": {"queues": {"tt-c": {"limiter": 5}}}}, "limiter"),
        # Declared with other limits elsewhere (here by the test settings).
        ({"QUEUES": [], "OPTIONS": {"queues": {"tasks-serial": {}}}}, "declared twice"),
    ],
)
def test_bad_options_are_reported_by_the_system_check(params, message):
    with override_settings(TASKS=dbos_tasks(**params)):
        (error,) = check_task_backends()
    assert error.level >= 40
    assert message in error.msg


def test_limits_for_a_queue_no_task_may_use_are_a_warning():
    params = {"QUEUES": ["default"], "OPTIONS": {"queues": {"tt-unused": {"concurrency": 1}}}}
    with override_settings(TASKS=dbos_tasks(**params)):
        (warning,) = check_task_backends()
    assert warning.id == "django_dbos.tasks.W001"
    assert "tt-unused" in warning.msg


def test_bad_options_make_enqueue_fail_without_writing():
    params = {"QUEUES": [], "OPTIONS": {"queues": {"tt-bad": {"concurrency": -1}}}}
    with (
        override_settings(TASKS=dbos_tasks(**params)),
        pytest.raises(ImproperlyConfigured, match="positive integer"),
    ):
        add.using(queue_name="tt-bad").enqueue(1, 2)
    assert task_count() == 0
