import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbos.errors import DBOSConfigurationError
from django_dbos.worker import Worker


class Command(BaseCommand):
    help = "Run a DBOS worker: queue dispatch, cron schedules, heartbeat, and recovery."

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
            type=int,
            default=None,
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
            help="Seconds to let running workflows finish after SIGTERM/SIGINT (default 30).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
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
        if not logging.getLogger("django_dbos").handlers and not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if options["concurrency"] is not None and options["concurrency"] < 1:
            self.stderr.write("--concurrency must be at least 1.")
            raise SystemExit(2)
        port = options["metrics_port"]
        if port is not None and not 0 <= port <= 65535:
            raise CommandError("--metrics-port must be a port number, from 0 to 65535.")
        worker = Worker(
            queues=options["queues"],
            concurrency=options["concurrency"],
            recovery=not options["no_recovery"],
            scheduler=not options["no_scheduler"],
            shutdown_timeout=options["shutdown_timeout"],
            metrics_port=port,
            metrics_address=options["metrics_address"],
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        try:
            worker.run()
        except DBOSConfigurationError as exc:
            raise CommandError(str(exc)) from exc
