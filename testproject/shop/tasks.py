"""The demo shop's Django tasks, run as DBOS workflows by `rundbosworker` (docs/tasks.md)."""

import os
import signal

try:
    from django.tasks import TaskContext, task  # Django 6
except ImportError:
    from django_tasks import TaskContext, task  # Django 5.2: the django-tasks backport

from .models import Order


@task()
def confirm_order(order_id: int) -> str:
    Order.objects.filter(pk=order_id).update(status="confirmed")
    return "confirmed"


@task(takes_context=True)
def crash_on_first_attempt(context: TaskContext) -> int:
    """Kill the worker running it on the first attempt; return the attempt that finished."""
    if context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return context.attempt
