"""The exceptions django-dbos raises, each documented by the situation that raises it."""


class DBOSException(Exception):
    """Base class of every error django-dbos raises on purpose."""


class DBOSInvalidArgumentError(DBOSException, ValueError):
    """A call was given an argument it cannot use: a wrong type, a number out of range, an empty
    or overlong name or id, a naive datetime, an unknown option.

    It is a ValueError too, so `except ValueError:` written for Python's own checks catches it.
    """


class DBOSConfigurationError(DBOSException):
    """The DBOS settings or a declaration (decorator, queue) cannot be used as written."""


class DBOSNotRegisteredError(DBOSException):
    """A workflow, step or queue was looked up by a name that nothing registered."""


class DBOSSerializationError(DBOSException):
    """A value cannot be serialized (at the call, before anything is written) or deserialized."""


class DBOSWorkflowConflictIDError(DBOSException):
    """A workflow id is already taken by a workflow of another name."""


class DBOSNonExistentWorkflowError(DBOSException):
    """An operation names a workflow id that is not in the database."""


class DBOSWorkflowActiveError(DBOSException):
    """A delete named a workflow that has not finished (PENDING or ENQUEUED), or, with its
    children, one whose child has not: nothing was deleted."""


class DBOSUnexpectedStepError(DBOSException):
    """On replay, the code called a different operation at a recorded position (non-determinism)."""


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with retries failed on every attempt; `errors` holds each attempt's exception."""

    def __init__(self, step_name: str, max_attempts: int, last_error: str = ""):
        super().__init__(step_name, max_attempts, last_error)
        self.step_name = step_name
        self.max_attempts = max_attempts
        self.last_error = last_error
        self.errors: list[Exception] = []

    def __str__(self) -> str:
        last = f" Last error: {self.last_error}" if self.last_error else ""
        return f"Step {self.step_name!r} failed {self.max_attempts} times.{last}"


class DBOSMaxRecoveryAttemptsExceededError(DBOSException):
    """A workflow was recovered more often than its max_recovery_attempts allow."""


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """`get_result()` was called on a workflow that was cancelled."""


class DBOSPayloadExpiredError(DBOSException):
    """`get_result()`, resume or fork was asked of a workflow whose inputs and outcome the
    retention policy dropped (DBOS["RETENTION"]["PAYLOAD_DAYS"])."""


class DBOSQueueDeduplicatedError(DBOSException):
    """An enqueue named a deduplication id already held by an active workflow of that queue."""


class DBOSWorkflowCancelledError(BaseException):
    """Raised inside a cancelled workflow at its next operation.

    It derives from BaseException, as in DBOS Python, so that a user's `except Exception:`
    cannot swallow a cancellation.
    """
