"""`manage.py dbos`: list, inspect and manage workflows and queues (the DBOS CLI's verbs), move
stranded workflows to this code's version, and check a deploy."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_dbos import (
    DBOS,
    DBOSException,
    DBOSWorkflowConflictIDError,
    QueueStatus,
    StepInfo,
    UpgradeBlock,
    UpgradeCheck,
    WorkflowStatus,
    WorkflowStatusString,
    queries,
)

GZIP_MAGIC = b"\x1f\x8b"
MAX_CELL = 40  # table cells are cut to this many characters; --json gives the full values
RESUMABLE = {
    WorkflowStatusString.CANCELLED,
    WorkflowStatusString.ERROR,
    WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
}


class _Encoder(DjangoJSONEncoder):
    """Dates as ISO 8601, errors as "Class: message", anything else the JSON cannot hold as repr."""

    def default(self, o: Any) -> Any:
        if isinstance(o, BaseException):
            return _error(o)
        try:
            return super().default(o)
        except TypeError:
            return repr(o)


def _error(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, cls=_Encoder, ensure_ascii=False)


def _when(moment: datetime.datetime | None) -> str:
    if moment is None:
        return "-"
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(step: StepInfo) -> str:
    seconds = (step.completed_at - step.started_at).total_seconds()
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.1f} s"


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _moment(text: str) -> datetime.datetime:
    """A command-line date and time: ISO 8601, in the current time zone unless it says one."""
    moment = parse_datetime(text)
    if moment is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date and time.")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


@contextlib.contextmanager
def _lines_in(path: str) -> Iterator[Iterable[bytes]]:
    """The lines of an export file, or of stdin for "-", gzip or not (by its first bytes)."""
    with contextlib.ExitStack() as stack:
        if path == "-":
            raw = cast(io.BufferedReader, sys.stdin.buffer)
        else:
            raw = stack.enter_context(open(path, "rb"))
        if raw.peek(2)[:2] == GZIP_MAGIC:
            yield stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        else:
            yield raw


_AGE_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# A bound on --older-than: now minus much more is before the first representable date.
_OLDEST_AGE = datetime.timedelta(days=36_500)


def _age(text: str) -> datetime.timedelta:
    """A duration as prune's --older-than takes it: a number and a unit, 30d, 12h, 90m, 45s."""
    number, unit = text[:-1], text[-1:].lower()
    try:
        amount = float(number)
    except ValueError:
        amount = -1
    if unit not in _AGE_UNITS or not 0 <= amount < 1e6 or amount != amount:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: give a number and a unit, as 30d, 12h, 90m or 45s."
        )
    age = datetime.timedelta(**{_AGE_UNITS[unit]: amount})
    if age > _OLDEST_AGE:
        raise argparse.ArgumentTypeError(f"{text!r} is more than a century: no workflow is older.")
    return age


def _count(n: int, which: str = "") -> str:
    return f"{n} {which}workflow{'' if n == 1 else 's'}"


def _attributes(text: str) -> dict[str, Any]:
    """A command-line attributes filter: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a JSON object: give one such as \'{{"tenant": "acme"}}\'.'
        )
    return value


def _add_filters(verb: CommandParser) -> None:
    """The filters that `workflow list` and `workflow export` share: list_workflows'."""
    verb.add_argument(
        "--id", dest="workflow_ids", action="extend", nargs="+", help="Only these workflows."
    )
    verb.add_argument(
        "--status",
        action="extend",
        nargs="+",
        type=str.upper,
        choices=WorkflowStatusString.values,
        help="Only workflows with one of these statuses.",
    )
    verb.add_argument("--name", help="Only workflows of this registered name.")
    verb.add_argument("--queue", help="Only workflows of this queue.")
    verb.add_argument("--id-prefix", help="Only workflows whose id starts with this.")
    verb.add_argument(
        "--start-time", type=_moment, help="Only workflows created at or after this time."
    )
    verb.add_argument(
        "--end-time", type=_moment, help="Only workflows created at or before this time."
    )
    verb.add_argument(
        "--completed-after", type=_moment, help="Only finished workflows, ended at or after this."
    )
    verb.add_argument(
        "--completed-before",
        type=_moment,
        help="Only finished workflows, ended at or before this.",
    )
    verb.add_argument("--app-version", help="Only workflows of this application version.")
    verb.add_argument("--user", help="Only workflows started by this authenticated user.")
    verb.add_argument("--executor", help="Only workflows of this executor id.")
    verb.add_argument("--parent", help="Only the children of this workflow.")
    verb.add_argument(
        "--has-parent",
        action=argparse.BooleanOptionalAction,
        help="Only children (--has-parent) or only top-level workflows (--no-has-parent).",
    )
    verb.add_argument("--forked-from", help="Only the forks of this workflow.")
    verb.add_argument(
        "--is-fork",
        action=argparse.BooleanOptionalAction,
        help="Only forks (--is-fork) or only workflows that are not (--no-is-fork).",
    )
    verb.add_argument(
        "--attributes",
        type=_attributes,
        metavar="JSON",
        help='Only workflows whose attributes contain this JSON object: \'{"tenant": "acme"}\'.',
    )


def _filters(options: dict[str, Any]) -> dict[str, Any]:
    """The filters given on the command line, as list_workflows and export_workflows take them."""
    return {
        "workflow_ids": options["workflow_ids"],
        "status": options["status"],
        "name": options["name"],
        "queue_name": options["queue"],
        "workflow_id_prefix": options["id_prefix"],
        "start_time": options["start_time"],
        "end_time": options["end_time"],
        "completed_after": options["completed_after"],
        "completed_before": options["completed_before"],
        "app_version": options["app_version"],
        "user": options["user"],
        "executor_id": options["executor"],
        "parent_workflow_id": options["parent"],
        "has_parent": options["has_parent"],
        "forked_from": options["forked_from"],
        "is_fork": options["is_fork"],
        "attributes": options["attributes"],
    }


WORKFLOW_COLUMNS = ("ID", "NAME", "STATUS", "QUEUE", "CREATED", "UPDATED")
STEP_COLUMNS = ("STEP", "NAME", "OUTPUT / ERROR", "CHILD", "STARTED", "DURATION")
QUEUE_COLUMNS: tuple[str, ...]
QUEUE_COLUMNS = ("NAME", "CONCURRENCY", "PER WORKER", "RATE LIMIT", "PRIORITY", "PARTITIONS")
QUEUE_COLUMNS += ("ENQUEUED", "PENDING", "OLDEST WAITING", "LIVE WORKERS", "STRANDED")
CHECK_COLUMNS = ("ID", "NAME", "STATUS", "VERSION", "DIVERGES AT")


def _divergence(block: UpgradeBlock) -> str:
    """Where the checked code leaves the record, in a line."""
    if block.function_id is None:
        return block.reason
    return (
        f"operation {block.function_id}: recorded {block.expected}, "
        f"the code of version {block.version} calls {block.found}"
    )


def _check_row(check: UpgradeCheck) -> list[Any]:
    block = check.blocked_at
    where = None if block is None else block.function_id or "start"
    return [check.workflow_id, check.name, check.status, check.app_version, where]


def _check_fields(check: UpgradeCheck) -> dict[str, Any]:
    return {**_status_fields(check), "blocked_at": _field(check.blocked_at)}


def _workflow_row(wf: WorkflowStatus) -> list[Any]:
    created, updated = _when(wf.created_at), _when(wf.updated_at)
    return [wf.workflow_id, wf.name, wf.status, wf.queue_name, created, updated]


def _step_row(step: StepInfo) -> list[Any]:
    outcome = f"raised {_error(step.error)}" if step.error else _json(step.output)
    timing = [_when(step.started_at), _duration(step)]
    return [step.function_id, step.function_name, outcome, step.child_workflow_id, *timing]


def _queue_row(queue: QueueStatus) -> list[Any]:
    limiter = queue.limiter
    rate = limiter and f"{limiter['limit']} / {limiter['period']:g} s"
    flags = [_yes_no(queue.priority_enabled), _yes_no(queue.partition_queue)]
    limits = [queue.concurrency, queue.worker_concurrency, rate, *flags]
    age = queue.oldest_enqueued_age_seconds
    load = [queue.enqueued, queue.pending, None if age is None else f"{age:.0f} s"]
    return [queue.name, *limits, *load, queue.live_workers, queue.stranded]


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else "yes" if flag else "no"


def _status_fields(status: WorkflowStatus | QueueStatus | UpgradeCheck) -> dict[str, Any]:
    return {field.name: _field(getattr(status, field.name)) for field in dataclasses.fields(status)}


def _field(value: Any) -> Any:
    """A value as JSON shows it: a nested value type (an UpgradeBlock) as its fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _queue_fields(queue: QueueStatus) -> dict[str, Any]:
    return {**_status_fields(queue), "warning": queue.warning}


def _step_fields(step: StepInfo) -> dict[str, Any]:
    fields = {field.name: getattr(step, field.name) for field in dataclasses.fields(step)}
    duration = step.completed_at - step.started_at
    return {**fields, "duration_ms": round(duration.total_seconds() * 1000, 3)}


class Command(BaseCommand):
    help = "List, inspect, cancel, resume, fork and delete workflows; list queues; check health."

    def execute(self, *args: Any, **options: Any) -> Any:
        if options.get("group") == "health":
            # A probe answers about the system database alone: the system checks would first
            # read every model (and, from Django 6.1, connect to every database) and fail with
            # a traceback instead of its one-line reason.
            options["skip_checks"] = True
        return super().execute(*args, **options)

    def add_arguments(self, parser: CommandParser) -> None:
        groups = parser.add_subparsers(
            dest="group", required=True, metavar="{workflow,queue,health,check-deploy}"
        )
        workflow = groups.add_parser("workflow", help="Inspect and manage workflows.")
        verbs = workflow.add_subparsers(dest="verb", required=True)

        listing = verbs.add_parser("list", help="List workflows, oldest first.")
        _add_filters(listing)
        listing.add_argument("--limit", type=int, default=20, help="At most this many (20).")
        listing.add_argument("--offset", type=int, default=0, help="Skip this many first.")
        listing.add_argument("--sort-desc", action="store_true", help="Newest first.")
        listing.set_defaults(handler=self.workflow_list)

        get = verbs.add_parser("get", help="Show a workflow, with its input, output and error.")
        get.set_defaults(handler=self.workflow_get)
        steps = verbs.add_parser("steps", help="Show the recorded steps of a workflow.")
        steps.set_defaults(handler=self.workflow_steps)
        cancel = verbs.add_parser("cancel", help="Cancel a workflow and its descendants.")
        cancel.set_defaults(handler=self.workflow_cancel)
        resume = verbs.add_parser(
            "resume",
            help="Run a cancelled or failed workflow again from its last completed step. "
            "One that is not queued runs in this process: the command waits for it.",
        )
        resume.set_defaults(handler=self.workflow_resume)
        fork = verbs.add_parser(
            "fork",
            help="Start a new workflow that reuses the outcomes of the steps before --step. "
            "One that runs in this process is waited for.",
        )
        fork.add_argument(
            "--step", type=int, default=1, help="The first step to run anew (default: 1)."
        )
        fork.add_argument("--application-version", help="Run the fork on workers of this version.")
        fork.set_defaults(handler=self.workflow_fork)
        replay = verbs.add_parser(
            "replay",
            help="Replay a recorded workflow on the current code, without running any step; "
            "fail with the difference if the code would take another step somewhere.",
        )
        replay.set_defaults(handler=self.workflow_replay)
        for verb in (get, steps, cancel, resume, fork, replay):
            verb.add_argument("workflow_id", metavar="ID")

        self._add_export_and_import(verbs)
        delete = verbs.add_parser(
            "delete",
            help="Delete finished workflows with their steps, messages, events and streams. "
            "All or none: nothing is deleted if one of them has not finished.",
        )
        delete.add_argument("workflow_ids", metavar="ID", nargs="+")
        delete.add_argument("--children", action="store_true", help="Delete their descendants too.")
        delete.set_defaults(handler=self.workflow_delete)
        prune = verbs.add_parser(
            "prune",
            help="Delete the finished workflows that ended before a time, in batches; a "
            "workflow whose parent or children still run is kept.",
        )
        prune.add_argument(
            "--older-than",
            required=True,
            type=_age,
            metavar="AGE",
            help="Those that ended longer ago than this: 30d, 12h, 90m or 45s.",
        )
        prune.add_argument(
            "--status",
            type=str.upper,
            choices=queries.FINISHED,
            help="Only workflows that ended with this status.",
        )
        prune.add_argument("--dry-run", action="store_true", help="Count them, and delete nothing.")
        prune.set_defaults(handler=self.workflow_prune)

        queue = groups.add_parser("queue", help="Inspect queues.")
        queue_verbs = queue.add_subparsers(dest="verb", required=True)
        queue_list = queue_verbs.add_parser("list", help="List queues, their limits and load.")
        queue_list.set_defaults(handler=self.queue_list)

        health = groups.add_parser(
            "health",
            help="Exit 0 when the system database answers, 1 with the reason otherwise: for "
            "liveness and readiness probes.",
        )
        health.add_argument(
            "--worker",
            action="store_true",
            help="Also exit 1 when a queue has ENQUEUED work that no live worker serves.",
        )
        health.set_defaults(handler=self.health)

        upgrade = verbs.add_parser(
            "upgrade",
            help="Replay each stranded workflow (PENDING or ENQUEUED on a version no live worker "
            "runs) on this code, without running any step; move those it continues to this "
            "code's version, and record where the others diverge.",
        )
        upgrade.add_argument("--from-version", help="Only the workflows of this version.")
        upgrade.add_argument(
            "--dry-run", action="store_true", help="Replay and report; move and record nothing."
        )
        upgrade.set_defaults(handler=self.workflow_upgrade)
        check_deploy = groups.add_parser(
            "check-deploy",
            help="Run with new code against the production database: list the in-flight "
            "workflows this code cannot continue, and exit 1 if there are any. Read-only.",
        )
        check_deploy.set_defaults(handler=self.check_deploy)

        for verb in (listing, get, steps, fork, queue_list, health, upgrade, check_deploy):
            verb.add_argument("--json", action="store_true", help="Print JSON, not a table.")

    def _add_export_and_import(self, verbs: Any) -> None:
        export = verbs.add_parser(
            "export",
            help="Write the matching workflows, with their steps, events, streams and messages, "
            "as JSON Lines (one workflow a line, oldest first) to stdout or --output.",
        )
        _add_filters(export)
        export.add_argument("--output", "-o", metavar="FILE", help="Write to FILE, not stdout.")
        export.add_argument(
            "--gzip", action="store_true", help="Compress (implied by an --output ending in .gz)."
        )
        export.set_defaults(handler=self.workflow_export)
        imports = verbs.add_parser(
            "import",
            help="Write back the workflows of a file made by export (gzip or not; - for stdin), "
            "each in its own transaction; stop at the first line that cannot be imported.",
        )
        imports.add_argument("file", metavar="FILE")
        imports.add_argument(
            "--skip-existing",
            action="store_true",
            help="Pass over workflows whose id is already in the database, instead of stopping.",
        )
        imports.set_defaults(handler=self.workflow_import)

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        try:
            options["handler"](options)
        except DBOSException as exc:
            raise CommandError(str(exc)) from exc

    # Output ---------------------------------------------------------------------------------

    def _note(self, message: str) -> None:
        """Tell the user what happens, on stderr, so that stdout stays one id or valid JSON."""
        if self.verbosity >= 1:
            self.stderr.write(message)

    def _print_json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, cls=_Encoder, indent=2, ensure_ascii=False))

    def _print_table(self, headers: Sequence[str], rows: list[Sequence[Any]], empty: str) -> None:
        if not rows:
            self.stdout.write(empty)
            return
        cells = [[_cell(value) for value in row] for row in rows]
        widths = [max(len(row[i]) for row in [headers, *cells]) for i in range(len(headers))]
        for row in [headers, *cells]:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )

    def _existing(self, workflow_id: str) -> WorkflowStatus:
        status = DBOS.get_workflow_status(workflow_id)
        if status is None:
            raise CommandError(f"There is no workflow with id {workflow_id!r}.")
        return status

    # Workflows ------------------------------------------------------------------------------

    def workflow_list(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1 or options["offset"] < 0:
            raise CommandError("--limit must be at least 1 and --offset at least 0.")
        found = DBOS.list_workflows(
            **_filters(options),
            limit=options["limit"],
            offset=options["offset"],
            sort_desc=options["sort_desc"],
            load_input=False,
            load_output=False,
        )
        if options["json"]:
            keep: tuple[str, ...]
            keep = ("workflow_id", "name", "status", "queue_name", "created_at", "updated_at")
            keep += ("executor_id", "app_version", "recovery_attempts", "parent_workflow_id")
            keep += ("upgrade_blocked_at", "attributes", "completed_at")
            self._print_json([{key: _field(getattr(wf, key)) for key in keep} for wf in found])
            return
        self._print_table(
            WORKFLOW_COLUMNS, [_workflow_row(wf) for wf in found], "No workflows match."
        )
        self._print_divergences([(wf.workflow_id, wf.upgrade_blocked_at) for wf in found])

    def workflow_get(self, options: dict[str, Any]) -> None:
        fields = _status_fields(self._existing(options["workflow_id"]))
        if options["json"]:
            self._print_json(fields)
            return
        width = max(len(name) for name in fields)
        for name, value in fields.items():
            if name in ("input", "output"):
                text = _json(value) or "-"
            elif name == "attributes":  # by key: PostgreSQL's jsonb keeps no order
                text = (
                    "-" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
                )
            elif name == "error":
                text = _error(value) or "-"
            elif isinstance(value, datetime.datetime):
                text = _when(value)
            elif name == "upgrade_blocked_at" and value is not None:
                text = _divergence(UpgradeBlock(**value))
            else:
                text = "-" if value is None else str(value)
            self.stdout.write(f"{name.ljust(width)}  {text}")

    def workflow_steps(self, options: dict[str, Any]) -> None:
        self._existing(options["workflow_id"])
        steps = DBOS.list_workflow_steps(options["workflow_id"])
        if options["json"]:
            self._print_json([_step_fields(step) for step in steps])
            return
        self._print_table(STEP_COLUMNS, [_step_row(step) for step in steps], "No steps recorded.")

    def workflow_cancel(self, options: dict[str, Any]) -> None:
        workflow_id = options["workflow_id"]
        DBOS.cancel_workflow(workflow_id)
        status = self._existing(workflow_id).status
        if status == WorkflowStatusString.CANCELLED:
            self.stdout.write(f"Cancelled workflow {workflow_id}.")
        else:
            self.stdout.write(f"Workflow {workflow_id} is {status}: there is nothing to cancel.")

    def workflow_resume(self, options: dict[str, Any]) -> None:
        workflow_id = options["workflow_id"]
        before = self._existing(workflow_id).status
        if before not in RESUMABLE:
            self.stdout.write(f"Workflow {workflow_id} is {before}: there is nothing to resume.")
            return
        handle = DBOS.resume_workflow(workflow_id)
        queue_name = self._existing(workflow_id).queue_name
        if queue_name is not None:
            self.stdout.write(f"Resumed workflow {workflow_id}: back on queue {queue_name}.")
            return
        status = self._wait_here(handle)
        self.stdout.write(f"Resumed workflow {workflow_id}: {status.status}.")

    def workflow_fork(self, options: dict[str, Any]) -> None:
        original = options["workflow_id"]
        try:
            handle = DBOS.fork_workflow(original, options["step"], options["application_version"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        status = self._existing(handle.workflow_id)
        if status.status != WorkflowStatusString.ENQUEUED:
            status = self._wait_here(handle)
        if options["json"]:
            self._print_json(_status_fields(status))
        elif status.status == WorkflowStatusString.ENQUEUED:
            self.stdout.write(handle.workflow_id)
            self._note(f"Enqueued on {status.queue_name} for version {status.app_version}.")
        else:
            self.stdout.write(handle.workflow_id)
            self._note(f"Forked from {original} at step {options['step']}: {status.status}.")

    def workflow_replay(self, options: dict[str, Any]) -> None:
        from django_dbos.testing import replay

        self._existing(options["workflow_id"])
        found = replay(options["workflow_id"])
        if not found.ok:
            raise CommandError(found.report())
        self.stdout.write(found.report())

    def workflow_export(self, options: dict[str, Any]) -> None:
        records = DBOS.export_workflows(**_filters(options))
        output = options["output"]
        compress = options["gzip"] or (output or "").endswith(".gz")
        count = 0
        with self._lines_out(output, compress) as write:
            for record in records:
                write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
                count += 1
        self._note(f"Exported {count} workflow{'' if count == 1 else 's'}.")

    @contextlib.contextmanager
    def _lines_out(self, output: str | None, compress: bool) -> Iterator[Callable[[str], Any]]:
        """A function that writes one line to the export's destination, open in the block."""
        if output is None and not compress:
            yield self.stdout.write  # it ends each line
            return
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(open(output, "wb")) if output else sys.stdout.buffer
            out = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb")) if compress else raw
            yield lambda line: out.write(line.encode() + b"\n")

    def workflow_import(self, options: dict[str, Any]) -> None:
        imported = skipped = 0
        number = 0
        try:
            with _lines_in(options["file"]) as lines:
                for number, line in enumerate(lines, start=1):  # noqa: B007 (read in except)
                    if not line.strip():
                        continue
                    try:
                        DBOS.import_workflow(json.loads(line))
                        imported += 1
                    except DBOSWorkflowConflictIDError:
                        if not options["skip_existing"]:
                            raise
                        skipped += 1
        except (DBOSException, ValueError, OSError, EOFError) as exc:
            problem = f"is not JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            done = f"{imported} workflow{'' if imported == 1 else 's'} before it"
            raise CommandError(
                f"Line {number} of {options['file']}: {problem} The {done} were imported; fix "
                "the line and import the file again with --skip-existing to go on."
                if number
                else f"Cannot read {options['file']}: {exc}"
            ) from exc
        passed = f" ({skipped} already there, skipped)" if skipped else ""
        self.stdout.write(f"Imported {imported} workflow{'' if imported == 1 else 's'}{passed}.")

    def workflow_delete(self, options: dict[str, Any]) -> None:
        workflow_ids = list(dict.fromkeys(options["workflow_ids"]))
        for workflow_id in workflow_ids:
            self._existing(workflow_id)
        DBOS.delete_workflows(workflow_ids, delete_children=options["children"])
        children = " and their descendants" if options["children"] else ""
        listed = ", ".join(workflow_ids)
        self.stdout.write(f"Deleted {_count(len(workflow_ids))}{children}: {listed}.")

    def workflow_prune(self, options: dict[str, Any]) -> None:
        cutoff = timezone.now() - options["older_than"]
        count = queries.prune_workflows(
            cutoff, status=options["status"], dry_run=options["dry_run"]
        )
        which = f"{options['status']} " if options["status"] else "finished "
        ended = f"that ended before {_when(cutoff)}"
        if options["dry_run"]:
            self.stdout.write(f"Would delete {_count(count, which)} {ended} (dry run).")
        else:
            self.stdout.write(f"Deleted {_count(count, which)} {ended}.")

    def _wait_here(self, handle: Any) -> WorkflowStatus:
        """Wait for a workflow that runs in this process: exiting would abandon it to recovery."""
        self._note(f"Workflow {handle.workflow_id} runs in this process: waiting for it.")
        with contextlib.suppress(Exception):  # its outcome is in its status, shown by the caller
            handle.get_result()
        return self._existing(handle.workflow_id)

    # Versions and deploys -------------------------------------------------------------------

    def _print_divergences(self, blocks: list[tuple[str, UpgradeBlock | None]]) -> None:
        """Under a table, where each blocked workflow leaves its record, in full."""
        lines = [f"{workflow_id}: {_divergence(b)}." for workflow_id, b in blocks if b is not None]
        if lines:
            self.stdout.write("\n" + "\n".join(lines))

    def workflow_upgrade(self, options: dict[str, Any]) -> None:
        done = queries.upgrade_stranded(
            from_version=options["from_version"], dry_run=options["dry_run"]
        )
        if options["json"]:
            self._print_json([_check_fields(check) for check in done.checked])
        else:
            self._print_table(
                (*CHECK_COLUMNS, "MOVED"),
                [[*_check_row(check), _yes_no(check.moved)] for check in done.checked],
                "No stranded workflows to upgrade.",
            )
            self._print_divergences(
                [(check.workflow_id, check.blocked_at) for check in done.checked]
            )
        continues = [check for check in done.checked if check.blocked_at is None]
        if options["dry_run"]:
            self._note(
                f"Dry run: {_count(len(continues))} would move to version {done.to_version}, "
                f"{len(done.blocked)} cannot continue on it; nothing was written."
            )
            return
        self._note(
            f"{_count(len(done.moved))} moved to version {done.to_version}, "
            f"{len(done.blocked)} cannot continue on it."
        )
        if done.moved and done.to_version not in {
            version.version_name for version in queries.versions() if version.live_executors
        }:
            self._note(
                f"No live worker runs version {done.to_version} yet: they continue when one starts."
            )

    def check_deploy(self, options: dict[str, Any]) -> None:
        blocked = queries.check_deploy()
        if options["json"]:
            self._print_json([_check_fields(check) for check in blocked])
        else:
            self._print_table(
                CHECK_COLUMNS,
                [_check_row(check) for check in blocked],
                f"Every in-flight workflow replays on this code (version "
                f"{queries.running_version()}).",
            )
            self._print_divergences([(check.workflow_id, check.blocked_at) for check in blocked])
        if blocked:
            raise CommandError(
                f"{_count(len(blocked))} in flight cannot continue on this code: keep the old "
                "path with DBOS.patch(), or let them finish first (docs/deploying.md).",
                returncode=1,
            )

    # Queues ---------------------------------------------------------------------------------

    def queue_list(self, options: dict[str, Any]) -> None:
        found = DBOS.list_queues()
        if options["json"]:
            self._print_json([_queue_fields(queue) for queue in found])
            return
        self._print_table(
            QUEUE_COLUMNS,
            [_queue_row(queue) for queue in found],
            "No queues yet: a queue is recorded when a worker starts or work is enqueued on it.",
        )
        warnings = [f"{queue.name}: {queue.warning}" for queue in found if queue.warning]
        if warnings:
            self.stdout.write("")
            for warning in warnings:
                self.stdout.write(warning)

    # Health ---------------------------------------------------------------------------------

    def health(self, options: dict[str, Any]) -> None:
        """Report on stdout; exit 1 (CommandError, the reason on stderr) when unhealthy."""
        report: dict[str, Any]
        try:
            state = queries.health(worker=options["worker"])
        except DatabaseError as exc:
            problem: str | None = " ".join(
                f"The system database {queries.database()!r} did not answer: {exc}".split()
            )
            report = {"status": "unhealthy", "reason": problem, "database": "unreachable"}
        else:
            problem = state.worker_problem()
            report = {
                "status": "unhealthy" if problem else "ok",
                "reason": problem,
                "database": "reachable",
                "live_executors": state.live_executors,
            }
            if options["worker"]:
                report["unserved_queues"] = state.unserved_queues
        if options["json"]:
            self._print_json(report)
        elif problem is None:
            live = report["live_executors"]
            self.stdout.write(
                f"ok: the system database answers; {live} live executor{'' if live == 1 else 's'}."
            )
        if problem is not None:
            raise CommandError(problem, returncode=1)
