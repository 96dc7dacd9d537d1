"""Durable workflows for Django, with the semantics of DBOS Transact."""

from typing import TYPE_CHECKING, Any

from .errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConfigurationError,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSQueueDeduplicatedError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)

if TYPE_CHECKING:
    from .api import (
        DBOS,
        Queue,
        QueueStatus,
        SetEnqueueOptions,
        SetWorkflowID,
        SetWorkflowTimeout,
        StepInfo,
        WorkflowHandle,
        WorkflowSchedule,
        WorkflowStatus,
        WorkflowStatusString,
    )
    from .client import DBOSClient

__version__ = "0.1.0"

# The API needs the models, which Django can only import once the app registry is ready, while
# this package is imported earlier (when INSTALLED_APPS is read): load it on first use.
_LAZY = {
    "DBOS",
    "Queue",
    "QueueStatus",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "WorkflowHandle",
    "WorkflowStatus",
    "WorkflowStatusString",
    "WorkflowSchedule",
}


def __getattr__(name: str) -> Any:
    if name == "DBOSClient":
        from .client import DBOSClient

        return DBOSClient
    if name in _LAZY:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'django_dbos' has no attribute {name!r}")


__all__ = [
    # Workflows
    "DBOS",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "WorkflowHandle",
    # Queues
    "Queue",
    "SetEnqueueOptions",
    # From outside the application
    "DBOSClient",
    # Value types
    "QueueStatus",
    "StepInfo",
    "WorkflowSchedule",
    "WorkflowStatus",
    "WorkflowStatusString",
    # Errors
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSConfigurationError",
    "DBOSException",
    "DBOSInvalidArgumentError",
    "DBOSMaxRecoveryAttemptsExceededError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSNotRegisteredError",
    "DBOSQueueDeduplicatedError",
    "DBOSSerializationError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError",
]
