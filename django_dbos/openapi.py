"""The OpenAPI 3.1 document of the JSON API (`GET openapi.json`), as a Python dict."""

from __future__ import annotations

import copy
from typing import Any

from .types import Status
from .validators import MAX_INTEGER

STATUSES = list(Status.values)
# The limits the views enforce.
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
MAX_WAIT_SECONDS = 60  # the longest a request may hold a web worker waiting for an event


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": _content(_ref(schema))}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: {"$ref": f"#/components/responses/{status}"} for status in statuses}


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": _content(_ref(schema))}


def _path_parameter(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
DATE_TIME = {"type": "string", "format": "date-time"}
BOOLEAN = {"type": "boolean"}
ANY: dict[str, Any] = {}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, and what to do."},
            "detail": {"description": "More about the error (any JSON value), or null."},
        },
    },
    "WorkflowError": {
        "type": "object",
        "required": ["type", "message"],
        "properties": {
            "type": {"type": "string", "description": "The exception's class."},
            "message": STRING,
        },
    },
    "Workflow": {
        "type": "object",
        "required": [
            "workflow_id",
            "status",
            "name",
            "input",
            "output",
            "error",
            "created_at",
            "updated_at",
            "queue_name",
            "executor_id",
            "app_version",
            "recovery_attempts",
            "priority",
            "deduplication_id",
            "parent_workflow_id",
            "forked_from",
            "payload_expired",
            "upgrade_blocked_at",
            "attributes",
            "completed_at",
        ],
        "properties": {
            "workflow_id": STRING,
            "status": {"type": "string", "enum": STATUSES},
            "name": {"type": "string", "description": "The name the workflow is registered as."},
            "input": {
                "type": ["object", "null"],
                "description": '{"args": [...], "kwargs": {...}}',
            },
            "output": {"description": "The result (any JSON value); null until it succeeds."},
            "error": _nullable(_ref("WorkflowError")),
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "queue_name": NULLABLE_STRING,
            "executor_id": NULLABLE_STRING,
            "app_version": NULLABLE_STRING,
            "recovery_attempts": {"type": "integer"},
            "priority": {"type": "integer", "description": "1 is the highest; 0 is none."},
            "deduplication_id": NULLABLE_STRING,
            "parent_workflow_id": NULLABLE_STRING,
            "forked_from": NULLABLE_STRING,
            "payload_expired": {
                "type": "boolean",
                "description": "The retention policy dropped its input, output and error "
                "message (the error keeps its type): they read as null.",
            },
            "upgrade_blocked_at": _nullable(_ref("UpgradeBlock")),
            "attributes": {
                "type": ["object", "null"],
                "description": "What SetWorkflowAttributes or update_workflow_attributes recorded.",
            },
            "completed_at": {
                **_nullable(DATE_TIME),
                "description": "When it ended, once finished; null while enqueued or running.",
            },
        },
    },
    "UpgradeBlock": {
        "type": "object",
        "description": "Where a replay of the workflow's record on a newer version's code "
        "diverged, so that an upgrade left it on its version (docs/deploying.md).",
        "required": ["version", "function_id", "expected", "found", "reason"],
        "properties": {
            "version": {"type": "string", "description": "The version whose code was checked."},
            "function_id": {
                "type": ["integer", "null"],
                "description": "The first diverging operation; null if the replay failed "
                "before any.",
            },
            "expected": {**NULLABLE_STRING, "description": "The operation recorded there."},
            "found": {**NULLABLE_STRING, "description": "What the checked code calls there."},
            "reason": STRING,
        },
    },
    "WorkflowList": {
        "type": "object",
        "required": ["workflows", "limit", "offset"],
        "properties": {
            "workflows": {"type": "array", "items": _ref("Workflow")},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "Step": {
        "type": "object",
        "required": [
            "function_id",
            "function_name",
            "output",
            "error",
            "child_workflow_id",
            "started_at",
            "completed_at",
        ],
        "properties": {
            "function_id": {"type": "integer", "description": "1 for the first operation."},
            "function_name": STRING,
            "output": ANY,
            "error": _nullable(_ref("WorkflowError")),
            "child_workflow_id": NULLABLE_STRING,
            "started_at": DATE_TIME,
            "completed_at": DATE_TIME,
        },
    },
    "StepList": {
        "type": "object",
        "required": ["workflow_id", "steps"],
        "properties": {"workflow_id": STRING, "steps": {"type": "array", "items": _ref("Step")}},
    },
    "WorkflowId": {
        "type": "object",
        "required": ["workflow_id"],
        "properties": {"workflow_id": STRING},
    },
    "Event": {
        "type": "object",
        "required": ["workflow_id", "key", "value"],
        "properties": {
            "workflow_id": STRING,
            "key": STRING,
            "value": {"description": "The event's value, or null when it was not set in time."},
        },
    },
    "Sent": {
        "type": "object",
        "required": ["workflow_id", "topic"],
        "properties": {"workflow_id": STRING, "topic": NULLABLE_STRING},
    },
    "Queue": {
        "type": "object",
        "required": [
            "name",
            "declared",
            "concurrency",
            "worker_concurrency",
            "limiter",
            "rate_limit",
            "rate_period_seconds",
            "priority_enabled",
            "partition_queue",
            "enqueued",
            "pending",
            "oldest_enqueued_age_seconds",
            "live_workers",
            "served",
            "stranded",
            "warning",
        ],
        "properties": {
            "name": STRING,
            "declared": {
                "type": "boolean",
                "description": "False for a queue known only from its workflows (enqueued by "
                "a DBOSClient before any worker declared it, or under a misspelt name): its "
                "limits and flags are then null.",
            },
            "concurrency": {"type": ["integer", "null"]},
            "worker_concurrency": {"type": ["integer", "null"]},
            "limiter": {
                "type": ["object", "null"],
                "required": ["limit", "period"],
                "properties": {"limit": {"type": "integer"}, "period": {"type": "number"}},
                "description": "Starts per period, across all workers.",
            },
            "rate_limit": {"type": ["integer", "null"], "description": "The limiter's limit."},
            "rate_period_seconds": {
                "type": ["number", "null"],
                "description": "The limiter's period.",
            },
            "priority_enabled": {"type": ["boolean", "null"]},
            "partition_queue": {"type": ["boolean", "null"]},
            "enqueued": {"type": "integer", "description": "Workflows waiting (ENQUEUED)."},
            "pending": {"type": "integer", "description": "Workflows running (PENDING)."},
            "oldest_enqueued_age_seconds": {
                "type": ["number", "null"],
                "description": "How long the oldest ENQUEUED workflow has waited.",
            },
            "live_workers": {
                "type": "integer",
                "description": "Workers with a recent heartbeat that dispatch this queue.",
            },
            "served": {"type": "boolean", "description": "Whether live_workers is above 0."},
            "stranded": {
                "type": "integer",
                "description": "Workflows (ENQUEUED or PENDING) of an application version that "
                "no live worker runs: they wait for a worker of that version, or for an upgrade "
                "(docs/deploying.md).",
            },
            "warning": {
                "type": ["string", "null"],
                "description": "Set when workflows wait and no live worker serves the queue.",
            },
        },
    },
    "Wait": {
        "type": "object",
        "description": "A PENDING workflow waiting in recv for a message (the admin's inbox).",
        "required": [
            "workflow_id",
            "function_id",
            "name",
            "topic",
            "form",
            "since",
            "deadline",
            "idempotency_key",
            "answer_url",
        ],
        "properties": {
            "workflow_id": STRING,
            "function_id": {"type": "integer", "description": "The recv's operation."},
            "name": {"type": "string", "description": "The workflow's registered name."},
            "topic": NULLABLE_STRING,
            "form": {
                "type": "string",
                "description": 'The Django form it is answered with ("module:QualName"), or "" '
                "for any JSON value.",
            },
            "since": DATE_TIME,
            "deadline": {**DATE_TIME, "description": "When recv gives up and returns null."},
            "idempotency_key": {
                "type": "string",
                "description": "Send the answer with this key: the wait receives one answer.",
            },
            "answer_url": {
                **NULLABLE_STRING,
                "description": "The admin's page to answer it (null without the admin).",
            },
        },
    },
    "WaitList": {
        "type": "object",
        "required": ["waits", "limit"],
        "properties": {
            "waits": {"type": "array", "items": _ref("Wait")},
            "limit": {"type": "integer"},
        },
    },
    "QueueList": {
        "type": "object",
        "required": ["queues"],
        "properties": {"queues": {"type": "array", "items": _ref("Queue")}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "database", "live_executors"],
        "properties": {
            "status": {"const": "ok"},
            "database": {"const": "reachable"},
            "live_executors": {
                "type": "integer",
                "description": "Processes whose heartbeat is recent.",
            },
            "unserved_queues": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "With ?worker=true only: always empty in a 200 answer (the 503 "
                "answer names the queues with ENQUEUED work that no live worker serves).",
            },
        },
    },
    "StartRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "args": {"type": "array", "description": "Positional arguments."},
            "kwargs": {"type": "object", "description": "Keyword arguments."},
            "workflow_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "description": "An idempotency key: a second start with it runs nothing new.",
            },
            "queue_name": {"type": "string", "description": "Enqueue on this queue."},
        },
    },
    "ForkRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["start_step"],
        "properties": {
            "start_step": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_INTEGER,
                "description": "Operations before this function id are reused, not rerun.",
            },
            "application_version": {"type": "string", "minLength": 1, "maxLength": 255},
        },
    },
    "SendRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {"description": "Any JSON value."},
            "topic": NULLABLE_STRING,
            "idempotency_key": {
                **NULLABLE_STRING,
                "description": "A second send with the same key to this workflow delivers "
                "nothing (the Idempotency-Key header does the same).",
            },
        },
    },
}


def _error(description: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _content(_ref("Error"))}
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Any] = {
    "400": _error("Malformed request: the error names what is wrong."),
    "401": _error(
        "Not authenticated.",
        **{"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Basic"}},
    ),
    "403": _error("No permission, or a session request without its CSRF token."),
    "404": _error("No such workflow (or workflow name)."),
    "409": _error(
        "The workflow id or deduplication id is taken, or the workflow to delete has not finished."
    ),
    "413": _error("The request body is too large."),
    "501": _error("A package this route needs is not installed: the error says which."),
    "503": _error("The system database is unreachable."),
}

PARAMETERS: dict[str, Any] = {
    "workflow_id": {"name": "workflow_id", "in": "path", "required": True, "schema": STRING},
    "key": {"name": "key", "in": "path", "required": True, "schema": STRING},
    "name": {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": STRING,
        "description": "The name the workflow is registered as.",
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _limit(what: str) -> dict[str, Any]:
    """A listing's page size, as the views check it."""
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
    return _query("limit", schema, f"At most this many {what}.")


READ = _errors("400", "401", "403", "404")
WRITE = _errors("400", "401", "403", "404", "413")

PATHS: dict[str, Any] = {
    "/workflows/": {
        "get": {
            "operationId": "listWorkflows",
            "summary": "List workflows",
            "parameters": [
                _query(
                    "status",
                    {"type": "array", "items": {"type": "string", "enum": STATUSES}},
                    "Only workflows in these statuses (repeat the parameter for several).",
                ),
                _query("name", STRING, "Only workflows registered under this name."),
                _query("queue_name", STRING, "Only workflows of this queue."),
                _query(
                    "workflow_id",
                    {"type": "array", "items": STRING},
                    "Only these workflows (repeat the parameter for several).",
                ),
                _query("workflow_id_prefix", STRING, "Only workflows whose id starts so."),
                _query("start_time", DATE_TIME, "Only workflows created at or after this time."),
                _query("end_time", DATE_TIME, "Only workflows created at or before this time."),
                _query("completed_after", DATE_TIME, "Only finished workflows, ended at or after."),
                _query(
                    "completed_before", DATE_TIME, "Only finished workflows, ended at or before."
                ),
                _query("app_version", STRING, "Only workflows of this application version."),
                _query("user", STRING, "Only workflows started by this authenticated user."),
                _query("executor_id", STRING, "Only workflows of this executor."),
                _query("parent_workflow_id", STRING, "Only the children of this workflow."),
                _query("has_parent", BOOLEAN, "Only children (true), or only top-level ones."),
                _query("forked_from", STRING, "Only the forks of this workflow."),
                _query("is_fork", BOOLEAN, "Only forks (true), or only workflows not forked."),
                _query(
                    "attributes",
                    STRING,
                    'A JSON object, such as {"tenant":"acme"}: only workflows whose attributes '
                    "contain it (nested objects by their keys, arrays by their elements).",
                ),
                _limit("workflows"),
                _query(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER, "default": 0},
                    "Skip this many workflows first.",
                ),
                _query(
                    "sort_desc",
                    {"type": "boolean", "default": False},
                    "Newest first (default: oldest first).",
                ),
            ],
            "responses": {**_ok("Workflows, by creation time.", "WorkflowList"), **READ},
        }
    },
    "/workflows/{workflow_id}/": {
        "parameters": [_path_parameter("workflow_id")],
        "get": {
            "operationId": "getWorkflow",
            "summary": "Get a workflow's status",
            "responses": {**_ok("The workflow.", "Workflow"), **READ},
        },
        "delete": {
            "operationId": "deleteWorkflow",
            "summary": "Delete a finished workflow with its steps, messages, events and streams",
            "description": (
                "Needs django_dbos.delete_workflowstatus. A workflow that has not finished "
                "(PENDING or ENQUEUED), or with delete_children one of its descendants, is "
                "refused with 409 and nothing is deleted."
            ),
            "parameters": [
                _query(
                    "delete_children",
                    {"type": "boolean", "default": False},
                    "Delete its children, grandchildren, ... too.",
                )
            ],
            "responses": {
                "204": {"description": "Deleted."},
                **_errors("400", "401", "403", "404", "409"),
            },
        },
    },
    "/workflows/{workflow_id}/steps/": {
        "parameters": [_path_parameter("workflow_id")],
        "get": {
            "operationId": "listWorkflowSteps",
            "summary": "List a workflow's recorded operations, in order",
            "responses": {**_ok("The steps.", "StepList"), **READ},
        },
    },
    "/workflows/{workflow_id}/cancel/": {
        "parameters": [_path_parameter("workflow_id")],
        "post": {
            "operationId": "cancelWorkflow",
            "summary": "Cancel a workflow and its descendants",
            "description": "Needs django_dbos.cancel_workflowstatus. Any request body is ignored.",
            "responses": {**_ok("The workflow, after the cancellation.", "Workflow"), **WRITE},
        },
    },
    "/workflows/{workflow_id}/resume/": {
        "parameters": [_path_parameter("workflow_id")],
        "post": {
            "operationId": "resumeWorkflow",
            "summary": "Run a cancelled or failed workflow again from its last completed step",
            "description": "Needs django_dbos.resume_workflowstatus. Any request body is ignored.",
            "responses": {**_ok("Resumed (or nothing to do).", "WorkflowId", "202"), **WRITE},
        },
    },
    "/workflows/{workflow_id}/fork/": {
        "parameters": [_path_parameter("workflow_id")],
        "post": {
            "operationId": "forkWorkflow",
            "summary": "Start a new workflow that reruns this one from a step",
            "description": "Needs django_dbos.fork_workflowstatus.",
            "requestBody": _body("ForkRequest"),
            "responses": {**_ok("The new workflow's id.", "WorkflowId", "202"), **WRITE},
        },
    },
    "/workflows/{workflow_id}/send/": {
        "parameters": [_path_parameter("workflow_id")],
        "post": {
            "operationId": "sendMessage",
            "summary": "Send a message to a workflow (it reads it with DBOS.recv)",
            "description": "Needs django_dbos.send_message or django_dbos.change_workflowstatus.",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "As the body's idempotency_key.",
                }
            ],
            "requestBody": _body("SendRequest"),
            "responses": {**_ok("Sent.", "Sent", "202"), **WRITE},
        },
    },
    "/workflows/{workflow_id}/events/{key}/": {
        "parameters": [_path_parameter("workflow_id"), _path_parameter("key")],
        "get": {
            "operationId": "getEvent",
            "summary": "Get the value a workflow published under a key",
            "parameters": [
                _query(
                    "timeout_seconds",
                    {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
                    "Wait up to this long for the event to be set (0: do not wait).",
                )
            ],
            "responses": {**_ok("The value, or null if not set in time.", "Event"), **READ},
        },
    },
    "/workflows/{workflow_id}/streams/{key}/": {
        "parameters": [_path_parameter("workflow_id"), _path_parameter("key")],
        "get": {
            "operationId": "readStream",
            "summary": "Read a workflow's stream as Server-Sent Events",
            "description": (
                "One `data: <json>` event per value, in order, as the workflow writes them; then "
                "`event: end` once the stream is closed or the workflow has ended (`event: error` "
                "if a value cannot be read)."
            ),
            "responses": {
                "200": {
                    "description": "The stream, as Server-Sent Events.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **READ,
            },
        },
    },
    "/workflows/start/{name}/": {
        "parameters": [_path_parameter("name")],
        "post": {
            "operationId": "startWorkflow",
            "summary": "Start a workflow declared with @DBOS.workflow(http=True)",
            "description": (
                "Needs django_dbos.add_workflowstatus. Runs in the web process, or on "
                "`queue_name` for a worker to run. Other workflows are refused with 403."
            ),
            "requestBody": _body("StartRequest", required=False),
            "responses": {
                **_ok("Started.", "WorkflowId", "202"),
                **_errors("400", "401", "403", "404", "409", "413"),
            },
        },
    },
    "/waits/": {
        "get": {
            "operationId": "listWaits",
            "summary": "List the workflows waiting in recv for a message, the longest first",
            "parameters": [
                _query("topic", STRING, "Only waits on this topic."),
                _query("name", STRING, "Only workflows registered under this name."),
                _limit("waits"),
            ],
            "responses": {**_ok("The waits.", "WaitList"), **_errors("400", "401", "403")},
        }
    },
    "/queues/": {
        "get": {
            "operationId": "listQueues",
            "summary": "List queues with their limits, workflows and live workers",
            "responses": {**_ok("The queues.", "QueueList"), **_errors("401", "403")},
        }
    },
    "/health/": {
        "get": {
            "operationId": "health",
            "summary": "Check the system database and count live executors",
            "description": (
                "For probes. With worker=true, also 503 when a queue has ENQUEUED work and no "
                "live worker serves it."
            ),
            "security": [],
            "parameters": [
                _query(
                    "worker",
                    {"type": "boolean", "default": False},
                    "Also require a live worker for every queue with ENQUEUED work.",
                )
            ],
            "responses": {**_ok("Healthy.", "Health"), **_errors("400", "503")},
        }
    },
    "/metrics/": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics computed from the system tables",
            "description": (
                "Prometheus text exposition (docs/monitoring.md). Needs "
                "django_dbos.view_workflowstatus, or `Authorization: Bearer <token>` with the "
                'token of DBOS["METRICS_TOKEN"]. 501 when prometheus_client is not installed '
                "(pip install 'django-dbos[metrics]')."
            ),
            "security": [{"basicAuth": []}, {"cookieAuth": []}, {"bearerAuth": []}],
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors("401", "403", "501", "503"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "django-dbos",
        "version": "1",
        "description": (
            "Durable workflows: list, inspect, manage and start them. Authenticate with HTTP "
            "Basic, or with Django's session cookie; session requests other than GET need the "
            "CSRF token in the X-CSRFToken header. Reading needs the "
            "django_dbos.view_workflowstatus permission. Errors are "
            '{"error": "<message>", "detail": <any JSON or null>}.'
        ),
    },
    "servers": [{"url": "/dbos"}],
    "security": [{"basicAuth": []}, {"cookieAuth": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": RESPONSES,
        "parameters": PARAMETERS,
        "securitySchemes": {
            "basicAuth": {"type": "http", "scheme": "basic"},
            "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            "bearerAuth": {"type": "http", "scheme": "bearer"},
        },
    },
}


def document(server_url: str = "/dbos", cookie_name: str = "sessionid") -> dict[str, Any]:
    """Return the document for an API mounted at `server_url`, with the project's cookie name."""
    result = copy.deepcopy(DOCUMENT)
    result["servers"] = [{"url": server_url}]
    result["components"]["securitySchemes"]["cookieAuth"]["name"] = cookie_name
    return result
