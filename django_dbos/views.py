"""The JSON API: list, inspect, manage and start workflows over HTTP, through the public API.

Mount it with `path("dbos/", include("django_dbos.urls"))`. Clients authenticate with Django's
session (then unsafe requests need the CSRF token) or with HTTP Basic (no token). Every error is
`{"error": "<message>", "detail": <anything or null>}`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import functools
import hmac
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from typing import Any, NoReturn, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from . import conf, openapi, queries, table_metrics
from .api import DBOS, Queue, SetWorkflowAttributes, SetWorkflowID, StepInfo, WorkflowStatus
from .errors import (
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowActiveError,
    DBOSWorkflowConflictIDError,
)
from .openapi import DEFAULT_LIMIT, MAX_INTEGER, MAX_LIMIT, MAX_WAIT_SECONDS
from .types import Status

logger = logging.getLogger("django_dbos")
T = TypeVar("T")

VIEW = "django_dbos.view_workflowstatus"
# Answering a waiting workflow (the inbox's permission); change_workflowstatus, which this
# endpoint needed before send_message existed, still allows it.
SEND = ("django_dbos.send_message", "django_dbos.change_workflowstatus")
CANCEL = "django_dbos.cancel_workflowstatus"
RESUME = "django_dbos.resume_workflowstatus"
FORK = "django_dbos.fork_workflowstatus"
DELETE = "django_dbos.delete_workflowstatus"
START = "django_dbos.add_workflowstatus"

MAX_KEY_LENGTH = 255
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


# Errors ---------------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered as `{"error": message, "detail": detail}` with an HTTP status."""

    def __init__(
        self, status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        return _json(
            {"error": self.message, "detail": self.detail}, status=self.status, headers=self.headers
        )


# The errors of the public API that a request can cause, most specific first: a bad argument
# (DBOSInvalidArgumentError) and any other DBOSException answer 400. Other exceptions are bugs,
# answered 500 by Django.
_ERROR_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (DBOSNonExistentWorkflowError, 404),
    (DBOSNotRegisteredError, 404),
    (DBOSWorkflowConflictIDError, 409),
    (DBOSQueueDeduplicatedError, 409),
    (DBOSWorkflowActiveError, 409),
    (DBOSException, 400),
)


def _error_response(exc: Exception) -> JsonResponse:
    status = next(code for kind, code in _ERROR_STATUSES if isinstance(exc, kind))
    return APIError(status, str(exc), detail={"type": type(exc).__name__}).response()


# JSON -----------------------------------------------------------------------------------------

_ENCODER = DjangoJSONEncoder()


def _plain(value: Any) -> Any:
    """Return a JSON-ready copy of a stored value: what DjangoJSONEncoder knows as it renders
    it, containers as lists and objects, and anything else as its repr()."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): _plain(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    try:
        return _ENCODER.default(value)
    except TypeError:
        return repr(value)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse(data, status=status, headers=headers, encoder=DjangoJSONEncoder, safe=False)


def _error_json(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return {"type": name, "message": str(error)}


def _workflow_json(status: WorkflowStatus) -> dict[str, Any]:
    return {
        "workflow_id": status.workflow_id,
        "status": str(status.status),
        "name": status.name,
        "input": _plain(status.input),
        "output": _plain(status.output),
        "error": _error_json(status.error),
        "created_at": status.created_at,
        "updated_at": status.updated_at,
        "queue_name": status.queue_name,
        "executor_id": status.executor_id,
        "app_version": status.app_version,
        "recovery_attempts": status.recovery_attempts,
        "priority": status.priority,
        "deduplication_id": status.deduplication_id,
        "parent_workflow_id": status.parent_workflow_id,
        "forked_from": status.forked_from,
        "payload_expired": status.payload_expired,
        "upgrade_blocked_at": (
            None
            if status.upgrade_blocked_at is None
            else dataclasses.asdict(status.upgrade_blocked_at)
        ),
        "attributes": status.attributes,
        "completed_at": status.completed_at,
    }


def _step_json(step: StepInfo) -> dict[str, Any]:
    return {
        "function_id": step.function_id,
        "function_name": step.function_name,
        "output": _plain(step.output),
        "error": _error_json(step.error),
        "child_workflow_id": step.child_workflow_id,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
    }


# Input ----------------------------------------------------------------------------------------


def _text(value: str, what: str) -> str:
    """Refuse what no database column can hold: NUL characters and unpaired surrogates."""
    if "\x00" in value:
        raise APIError(400, f"The {what} must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, f"The {what} is not valid Unicode text.") from None
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


# How deep a request body may nest: far beyond any workflow's arguments, and below what every
# Python's JSON encoder serializes (3.11's fails near 1,000 levels, 3.12's goes further), so
# that the answer does not depend on the Python version.
MAX_NESTING = 200


def _nesting(value: Any) -> int:
    """How many arrays and objects deep a parsed JSON value nests (without recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in item)
    return deepest


def _json_body(request: HttpRequest, fields: set[str]) -> dict[str, Any]:
    """Return the request's body, a JSON object with no other keys than `fields`."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise APIError(413, "The request body is too large.") from None
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    if _nesting(body) > MAX_NESTING:
        raise APIError(
            400, f"The request body nests arrays and objects deeper than {MAX_NESTING} levels."
        )
    unknown = sorted(set(body) - fields)
    if unknown:
        raise APIError(
            400,
            f"Unknown field(s) in the request body: {', '.join(unknown)}. "
            f"Expected: {', '.join(sorted(fields))}.",
            detail={"fields": unknown},
        )
    return body


def _field(body: dict[str, Any], name: str, kind: type[T], expected: str) -> T | None:
    """Return an optional field of a JSON body (None when absent), checking its type."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise APIError(
            400, f'"{name}" must be {expected}, not {json.dumps(value)[:60]}.', {"field": name}
        )
    if isinstance(value, str):
        _text(value, f'"{name}"')
    return value


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise APIError(400, f"{name} must be an integer from {low} to {high}.", {"parameter": name})
    return value


def _bool_param(request: HttpRequest, name: str) -> bool:
    raw = request.GET.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise APIError(400, f"{name} must be true or false.", {"parameter": name})
    return raw in ("true", "1")


def _text_param(request: HttpRequest, name: str) -> str | None:
    raw = request.GET.get(name)
    return None if raw is None else _text(raw, f"{name} parameter")


def _optional_bool_param(request: HttpRequest, name: str) -> bool | None:
    return _bool_param(request, name) if name in request.GET else None


def _time_param(request: HttpRequest, name: str) -> datetime.datetime | None:
    """An ISO 8601 date and time, in the project's time zone unless it says its own."""
    raw = request.GET.get(name)
    if raw is None:
        return None
    try:
        moment = parse_datetime(raw)
        if moment is not None:
            aware = timezone.make_aware(moment) if timezone.is_naive(moment) else moment
            return aware.astimezone(datetime.UTC)  # what the database compares
    except (ValueError, OverflowError):
        pass
    raise APIError(
        400,
        f"{name} must be an ISO 8601 date and time, such as 2026-12-07T09:00:00Z.",
        {"parameter": name},
    )


def _attributes_param(request: HttpRequest) -> dict[str, Any] | None:
    """The attributes filter: a JSON object, whose keys and values the workflows' contain."""
    raw = request.GET.get("attributes")
    if raw is None:
        return None
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
        if value is not None:  # null is no object either: SetWorkflowAttributes says so
            # The check SetWorkflowAttributes makes of what it records.
            return SetWorkflowAttributes(value).attributes
        problem = "not null"
    except (ValueError, RecursionError, DBOSInvalidArgumentError) as exc:
        problem = str(exc).rstrip(".")
    raise APIError(
        400,
        f'attributes must be a JSON object, such as {{"tenant": "acme"}} ({problem}).',
        {"parameter": "attributes"},
    )


def _statuses(request: HttpRequest) -> list[str] | None:
    values = request.GET.getlist("status")
    unknown = [value for value in values if value not in Status.values]
    if unknown:
        raise APIError(
            400, f"status must be one of {', '.join(Status.values)}.", {"parameter": "status"}
        )
    return values or None


def _timeout(request: HttpRequest) -> float:
    raw = request.GET.get("timeout_seconds", "0")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise APIError(
            400,
            f"timeout_seconds must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}.",
            {"parameter": "timeout_seconds"},
        )
    return value


def _key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH:
        raise APIError(400, f"The key is longer than {MAX_KEY_LENGTH} characters.")
    return key


def _existing(workflow_id: str) -> WorkflowStatus:
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        raise APIError(404, f"There is no workflow with id {workflow_id!r}.")
    return status


# Authentication and permissions ---------------------------------------------------------------


def _unauthorized(message: str) -> APIError:
    return APIError(401, message, headers={"WWW-Authenticate": 'Basic realm="django-dbos"'})


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering a failure with its reason instead of the failure page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _check_csrf(request: HttpRequest) -> None:
    def view(request: HttpRequest) -> HttpResponse:  # not csrf_exempt: the check runs
        return HttpResponse()

    check = _CsrfCheck(view)
    check.process_request(request)
    reason = check.process_view(request, view, (), {})
    if reason:
        raise APIError(
            403,
            f"CSRF verification failed: {reason} Send the csrftoken cookie's value in the "
            f"{settings.CSRF_HEADER_NAME.removeprefix('HTTP_').replace('_', '-')} header, or "
            "authenticate with HTTP Basic.",
        )


def _basic_user(request: HttpRequest, credentials: str) -> AbstractBaseUser:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            text = decoded.decode("latin-1")
    except (binascii.Error, ValueError):
        text = ""
    username, colon, password = text.partition(":")
    if not colon or "\x00" in text:
        raise _unauthorized("Malformed HTTP Basic credentials: expected base64 of user:password.")
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise _unauthorized("Invalid username or password.")
    return user


def _authorize(request: HttpRequest, permission: str | tuple[str, ...]) -> None:
    """Authenticate with HTTP Basic or the session (checking CSRF), then check the permission
    (one of them, for a tuple)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:6].lower() == "basic ":
        # The stubs type request.user as the settings' user model; authenticate() returns an
        # instance of it, typed as AbstractBaseUser.
        request.user = _basic_user(request, header[6:])  # type: ignore[assignment]
    else:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            raise _unauthorized("Authentication required: log in, or use HTTP Basic.")
        if request.method not in SAFE_METHODS:
            _check_csrf(request)
    allowed = (permission,) if isinstance(permission, str) else permission
    if not any(request.user.has_perm(name) for name in allowed):
        raise APIError(403, f"You do not have the {' or the '.join(allowed)} permission.")


View = Callable[..., HttpResponseBase]


def api_view(method: str, permission: str | tuple[str, ...] | None) -> Callable[[View], View]:
    """Make a view an API endpoint: its method, authentication and permission (None: public),
    URL arguments checked, and errors answered as JSON."""

    def decorator(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def endpoint(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
            try:
                if request.method != method:
                    raise APIError(
                        405,
                        f"Method {request.method} is not allowed here; use {method}.",
                        headers={"Allow": method},
                    )
                if permission is not None:
                    _authorize(request, permission)
                for name, value in kwargs.items():
                    _text(value, name)
                return view(request, **kwargs)
            except APIError as exc:
                return exc.response()
            except tuple(kind for kind, _ in _ERROR_STATUSES) as exc:
                return _error_response(exc)

        # The route's methods, for the tests that hold the schema to the routes; a function's
        # type has no attribute for them.
        endpoint.http_methods = (method,)  # type: ignore[attr-defined]
        return endpoint

    return decorator


def by_method(*endpoints: View) -> View:
    """One URL for several endpoints: each request goes to the endpoint of its method."""
    # Each endpoint's methods, set by api_view (see there).
    routes = {
        method: endpoint
        for endpoint in endpoints
        for method in endpoint.http_methods  # type: ignore[attr-defined]
    }

    @csrf_exempt
    def endpoint(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
        view = routes.get(request.method or "")
        if view is None:
            return APIError(
                405,
                f"Method {request.method} is not allowed here; use {' or '.join(routes)}.",
                headers={"Allow": ", ".join(routes)},
            ).response()
        return view(request, **kwargs)

    endpoint.http_methods = tuple(routes)  # type: ignore[attr-defined]
    return endpoint


# Reading workflows ----------------------------------------------------------------------------


@api_view("GET", VIEW)
def list_workflows(request: HttpRequest) -> HttpResponse:
    """List workflows, oldest first (newest with sort_desc), filtered by the query."""
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, MAX_INTEGER)
    ids = [_text(value, "workflow_id parameter") for value in request.GET.getlist("workflow_id")]
    workflows = DBOS.list_workflows(
        workflow_ids=ids or None,
        status=_statuses(request),
        name=_text_param(request, "name"),
        queue_name=_text_param(request, "queue_name"),
        start_time=_time_param(request, "start_time"),
        end_time=_time_param(request, "end_time"),
        app_version=_text_param(request, "app_version"),
        user=_text_param(request, "user"),
        attributes=_attributes_param(request),
        workflow_id_prefix=_text_param(request, "workflow_id_prefix"),
        executor_id=_text_param(request, "executor_id"),
        parent_workflow_id=_text_param(request, "parent_workflow_id"),
        has_parent=_optional_bool_param(request, "has_parent"),
        forked_from=_text_param(request, "forked_from"),
        is_fork=_optional_bool_param(request, "is_fork"),
        completed_after=_time_param(request, "completed_after"),
        completed_before=_time_param(request, "completed_before"),
        limit=limit,
        offset=offset,
        sort_desc=_bool_param(request, "sort_desc"),
    )
    return _json(
        {"workflows": [_workflow_json(w) for w in workflows], "limit": limit, "offset": offset}
    )


@api_view("GET", VIEW)
def get_workflow(request: HttpRequest, workflow_id: str) -> HttpResponse:
    return _json(_workflow_json(_existing(workflow_id)))


@api_view("GET", VIEW)
def list_steps(request: HttpRequest, workflow_id: str) -> HttpResponse:
    _existing(workflow_id)
    steps = DBOS.list_workflow_steps(workflow_id)
    return _json({"workflow_id": workflow_id, "steps": [_step_json(step) for step in steps]})


@api_view("GET", VIEW)
def get_event(request: HttpRequest, workflow_id: str, key: str) -> HttpResponse:
    """Return an event's value, waiting up to ?timeout_seconds= for it (null if never set)."""
    timeout = _timeout(request)
    _existing(workflow_id)
    value = DBOS.get_event(workflow_id, _key(key), timeout_seconds=timeout)
    return _json({"workflow_id": workflow_id, "key": key, "value": _plain(value)})


@api_view("GET", VIEW)
def read_stream(request: HttpRequest, workflow_id: str, key: str) -> StreamingHttpResponse:
    """Send a stream's values as Server-Sent Events until it is closed or the workflow ends."""
    _existing(workflow_id)
    events: Iterator[str] | AsyncIterator[str]
    if isinstance(request, ASGIRequest):
        # On the event loop: a reader waiting for the next value holds no thread.
        events = _server_sent_events_async(DBOS.read_stream_async(workflow_id, _key(key)))
    else:
        events = _server_sent_events(DBOS.read_stream(workflow_id, _key(key)))
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _close_connections() -> None:
    """Close this thread's database connections, but for those in a transaction."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


# Server-Sent Events: one `data:` event per value, then an `end` event (or an `error` event).
_END_EVENT = "event: end\ndata: null\n\n"


def _data_event(value: Any) -> str:
    return f"data: {json.dumps(_plain(value), cls=DjangoJSONEncoder)}\n\n"


def _error_event(exc: DBOSException) -> str:
    error = {"error": str(exc), "detail": {"type": type(exc).__name__}}
    return f"event: error\ndata: {json.dumps(error)}\n\n"


def _server_sent_events(values: Iterator[Any]) -> Iterator[str]:
    try:
        for value in values:
            yield _data_event(value)
    except DBOSException as exc:
        yield _error_event(exc)
        return
    yield _END_EVENT


async def _server_sent_events_async(values: AsyncIterator[Any]) -> AsyncIterator[str]:
    """The same events under ASGI, each passed on as it comes (Django would read a plain
    iterator to its end before sending anything).

    The values are read on the engine's database threads. The request's own thread, where
    Django ran the middleware and this view, gives its connections back first: Django would
    keep them open until the response ends, one per reader, for as long as the stream lasts.
    """
    await sync_to_async(_close_connections, thread_sensitive=True)()
    try:
        async for value in values:
            yield _data_event(value)
    except DBOSException as exc:
        yield _error_event(exc)
        return
    yield _END_EVENT


# Managing workflows ---------------------------------------------------------------------------


@api_view("POST", CANCEL)
def cancel_workflow(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """Cancel a workflow and its descendants; answer with its status after."""
    DBOS.cancel_workflow(workflow_id)
    return _json(_workflow_json(_existing(workflow_id)))


@api_view("POST", RESUME)
def resume_workflow(request: HttpRequest, workflow_id: str) -> HttpResponse:
    handle = DBOS.resume_workflow(workflow_id)
    return _json({"workflow_id": handle.workflow_id}, status=202)


@api_view("POST", FORK)
def fork_workflow(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """Start a copy of a workflow that reruns it from `start_step`."""
    body = _json_body(request, {"start_step", "application_version"})
    start_step = _field(body, "start_step", int, "an integer of 1 or more")
    if start_step is None:
        raise APIError(400, 'The body needs "start_step": the step to rerun from.')
    if not 1 <= start_step <= MAX_INTEGER:
        raise APIError(
            400, f'"start_step" must be from 1 to {MAX_INTEGER}.', {"field": "start_step"}
        )
    version = _field(body, "application_version", str, "a string")
    handle = DBOS.fork_workflow(workflow_id, start_step, application_version=version)
    return _json({"workflow_id": handle.workflow_id}, status=202)


@api_view("DELETE", DELETE)
def delete_workflow(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """Delete a finished workflow with all that is its (and, with ?delete_children=true, its
    descendants): 204; 409 if one has not finished, and then nothing is deleted."""
    delete_children = _bool_param(request, "delete_children")
    _existing(workflow_id)
    DBOS.delete_workflow(workflow_id, delete_children=delete_children)
    return HttpResponse(status=204)


@api_view("POST", SEND)
def send_message(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """Send a message; with an idempotency key (in the body or the Idempotency-Key header), a
    retried request delivers it once."""
    body = _json_body(request, {"message", "topic", "idempotency_key"})
    if "message" not in body:
        raise APIError(400, 'The body needs "message": any JSON value.')
    topic = _field(body, "topic", str, "a string")
    key = _field(body, "idempotency_key", str, "a string")
    header = request.headers.get("Idempotency-Key")
    if header is not None and key is not None and header != key:
        raise APIError(400, "The Idempotency-Key header and the body's idempotency_key differ.")
    DBOS.send(workflow_id, body["message"], topic=topic, idempotency_key=key or header)
    return _json({"workflow_id": workflow_id, "topic": topic}, status=202)


# GET reads a workflow, DELETE deletes it.
workflow = by_method(get_workflow, delete_workflow)


# Starting workflows ---------------------------------------------------------------------------


@api_view("POST", START)
def start_workflow(request: HttpRequest, name: str) -> HttpResponse:
    """Start a workflow declared with @DBOS.workflow(http=True), here or on a queue."""
    workflow = queries.workflow_named(name)
    if not workflow.http:
        raise APIError(
            403,
            f"Workflow {name!r} cannot be started over HTTP: declare it with "
            "@DBOS.workflow(http=True) to allow it.",
        )
    body = _json_body(request, {"args", "kwargs", "workflow_id", "queue_name"})
    args = _field(body, "args", list, "a JSON array") or []
    kwargs = _field(body, "kwargs", dict, "a JSON object") or {}
    workflow_id = _field(body, "workflow_id", str, "a string")
    queue_name = _field(body, "queue_name", str, "a string")
    _check_arguments(workflow, args, kwargs)
    queue = _queue(queue_name) if queue_name is not None else None
    with SetWorkflowID(workflow_id) if workflow_id is not None else nullcontext():
        if queue is None:
            handle = DBOS.start_workflow(workflow.function, *args, **kwargs)
        else:
            handle = queue.enqueue(workflow.function, *args, **kwargs)
    return _json({"workflow_id": handle.workflow_id}, status=202)


def _check_arguments(workflow: queries.RegisteredWorkflow, args: list, kwargs: dict) -> None:
    if workflow.signature is None:
        return
    try:
        workflow.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise APIError(
            400, f"The arguments do not fit workflow {workflow.name!r}: {exc}."
        ) from None


def _queue(name: str) -> Queue:
    try:
        return Queue._declared(name)
    except DBOSNotRegisteredError as exc:
        raise APIError(400, str(exc), {"field": "queue_name"}) from None


# Queues, health, the schema -------------------------------------------------------------------


@api_view("GET", VIEW)
def list_queues(request: HttpRequest) -> HttpResponse:
    """Every queue (DBOS.list_queues): its limits, its load, and whether a live worker serves it.

    `rate_limit` and `rate_period_seconds` are the `limiter`'s, as this response gave them first.
    """
    queues = []
    for queue in DBOS.list_queues():
        limiter = queue.limiter or {}
        queues.append(
            {
                **dataclasses.asdict(queue),
                "rate_limit": limiter.get("limit"),
                "rate_period_seconds": limiter.get("period"),
                "warning": queue.warning,
            }
        )
    return _json({"queues": queues})


@api_view("GET", None)
def health(request: HttpRequest) -> HttpResponse:
    """200 when the system database answers, with the number of live executors; else 503.
    With ?worker=true, also 503 when a queue has ENQUEUED work that no live worker serves.

    Public, like any probe a load balancer calls; it tells nothing about the workflows (with
    ?worker=true, the names of the queues whose work waits, and how many wait).
    """
    worker = _bool_param(request, "worker")
    try:
        state = queries.health(worker=worker)
    except DatabaseError:
        logger.exception("Health check: the system database %r did not answer.", queries.database())
        raise APIError(503, "The system database is unreachable.") from None
    body: dict[str, Any] = {
        "status": "ok",
        "database": "reachable",
        "live_executors": state.live_executors,
    }
    if worker:
        problem = state.worker_problem()
        if problem is not None:
            raise APIError(503, problem, detail={"unserved_queues": state.unserved_queues})
        body["unserved_queues"] = {}
    return _json(body)


# Metrics --------------------------------------------------------------------------------------


def _authorize_metrics(request: HttpRequest) -> None:
    """A bearer token equal to DBOS["METRICS_TOKEN"] (Prometheus), or a user allowed to view."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() != "bearer ":
        _authorize(request, VIEW)
        return
    token = conf.get("METRICS_TOKEN")
    if token is None:
        raise _unauthorized('Bearer tokens are not accepted: DBOS["METRICS_TOKEN"] is not set.')
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise _unauthorized("Invalid bearer token.")


@api_view("GET", None)
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of the tables' gauges (docs/monitoring.md)."""
    _authorize_metrics(request)
    try:
        body, content_type = table_metrics.exposition()
    except table_metrics.MetricsUnavailable as exc:
        raise APIError(501, str(exc)) from None
    except DatabaseError:
        logger.exception("Metrics: the system database %r did not answer.", queries.database())
        raise APIError(503, "The system database is unreachable.") from None
    return HttpResponse(body, content_type=content_type)


@api_view("GET", None)
def openapi_schema(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3.1 document of this API, with its server set to where it is mounted."""
    prefix = request.path.removesuffix("openapi.json").rstrip("/")
    return _json(
        openapi.document(server_url=prefix or "/", cookie_name=settings.SESSION_COOKIE_NAME)
    )
