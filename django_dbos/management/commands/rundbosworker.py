import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import autoreload

from django_dbos.errors import DBOSConfigurationError, DBOSInvalidArgumentError
from django_dbos.worker import Worker

# The logger this command's verbosity sets, with its children (Django's -v: 0 warnings only,
# 1 the project's LOGGING level or else info, 2 and 3 debug).
LOGGER = "django_dbos"
LEVELS = {0: logging.WARNING, 2: logging.DEBUG, 3: logging.DEBUG}


def _whole(value: str, low: int, high: int | None = None) -> int:
    """A whole number from low to high, or argparse's error saying what was wrong."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise argparse.ArgumentTypeError(f"must be {bounds}, not {number}")
    return number


def _positive(value: str) -> int:
    return _whole(value, 1)


def _port(value: str) -> int:
    return _whole(value, 0, 65535)


class Command(BaseCommand):
    help = (
        "Run a DBOS worker: queue dispatch, cron schedules, heartbeat, and recovery. SIGTERM or "
        "SIGINT stops it taking work and lets running workflows finish (--shutdown-timeout); a "
        "second one exits at once (what it ran is recovered)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="Dispatch only this queue (repeat for several; default: all queues).",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive,
            default=None,
            metavar="N",
            help="Workflow threads in this process (default: DBOS['WORKFLOW_THREADS']).",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_true",
            help="Do not fire cron schedules in this worker.",
        )
        parser.add_argument(
            "--no-recovery",
            action="store_true",
            help="Do not take over the workflows of dead executors.",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=30.0,
            metavar="S",
            help="Seconds to let running workflows finish after SIGTERM/SIGINT (default 30).",
        )
        parser.add_argument(
            "--executor-id",
            default=None,
            metavar="ID",
            help="This worker's executor id, stable across restarts so that it recovers its own "
            "workflows at once (default: DBOS['EXECUTOR_ID'], else host-pid-random).",
        )
        parser.add_argument(
            "--max-workflows",
            type=_positive,
            default=None,
            metavar="N",
            help="Start N queued workflows, let them finish, and exit 0 (for a supervisor to "
            "restart a worker whose code leaks; default: run until stopped).",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when Python code changes, as runserver does (for development).",
        )
        parser.add_argument(
            "--metrics-port",
            type=_port,
            default=None,
            metavar="N",
            help="Serve this worker's Prometheus metrics over HTTP on this port (needs "
            "django-dbos[metrics]; 0 picks a free port).",
        )
        parser.add_argument(
            "--metrics-address",
            default="0.0.0.0",
            help="The address the metrics server listens on (default 0.0.0.0: every interface, "
            "for a scraper on another host).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        _configure_logging(options["verbosity"])
        if options["reload"]:
            autoreload.run_with_reloader(self._run, **options)
        else:
            self._run(**options)

    def _run(self, **options: Any) -> None:
        try:
            worker = Worker(
                queues=options["queues"],
                concurrency=options["concurrency"],
                recovery=not options["no_recovery"],
                scheduler=not options["no_scheduler"],
                shutdown_timeout=options["shutdown_timeout"],
                executor_id=options["executor_id"],
                max_workflows=options["max_workflows"],
                metrics_port=options["metrics_port"],
                metrics_address=options["metrics_address"],
            )
        except DBOSInvalidArgumentError as exc:
            raise CommandError(str(exc)) from None
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            if stopping:
                # Second signal: leave now; the running workflows are recovered from their
                # last step, by this executor id when it comes back or by another worker.
                sys.stderr.write("DBOS worker: second signal, exiting at once.\n")
                sys.stderr.flush()
                os._exit(1)
            stopping = True
            worker.stop()

        if threading.current_thread() is threading.main_thread():
            # Not under --reload, where Django's reloader owns the main thread and the signals,
            # and restarts the process on a change (what ran is recovered from its last step).
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, stop)
        try:
            worker.run()
        except DBOSConfigurationError as exc:
            raise CommandError(str(exc)) from None


def _configure_logging(verbosity: int) -> None:
    """Set django-dbos's logger to the verbosity. Without any logging configured (no handler on
    it or on the root logger), give it a handler of its own; the root logger is left alone, so
    that other libraries log as the project says."""
    logger = logging.getLogger(LOGGER)
    if verbosity in LEVELS:
        logger.setLevel(LEVELS[verbosity])
    elif logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
