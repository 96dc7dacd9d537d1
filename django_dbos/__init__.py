"""Durable workflows for Django, with the semantics of DBOS Transact."""

import importlib
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
    DBOSPayloadExpiredError,
    DBOSQueueDeduplicatedError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowActiveError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)

if TYPE_CHECKING:
    from .api import (
        DBOS,
        Queue,
        SetEnqueueOptions,
        SetWorkflowAttributes,
        SetWorkflowID,
        SetWorkflowTimeout,
    )
    from .client import DBOSClient
    from .debouncer import Debouncer, DebouncerClient
    from .types import (
        Alert,
        QueueStatus,
        StepInfo,
        UpgradeBlock,
        UpgradeCheck,
        VersionInfo,
        WorkflowHandle,
        WorkflowSchedule,
        WorkflowStatus,
        WorkflowStatusString,
    )

__version__ = "0.1.0"

# The API needs the models, which Django can only import once the app registry is ready, while
# this package is imported earlier (when INSTALLED_APPS is read): load each name on first use,
# from the module that holds it.
_LAZY = {
    "DBOS": "api",
    "Queue": "api",
    "SetEnqueueOptions": "api",
    "SetWorkflowAttributes": "api",
    "SetWorkflowID": "api",
    "SetWorkflowTimeout": "api",
    "DBOSClient": "client",
    "Debouncer": "debouncer",
    "DebouncerClient": "debouncer",
    "Alert": "types",
    "QueueStatus": "types",
    "StepInfo": "types",
    "UpgradeBlock": "types",
    "UpgradeCheck": "types",
    "VersionInfo": "types",
    "WorkflowHandle": "types",
    "WorkflowSchedule": "types",
    "WorkflowStatus": "types",
    "WorkflowStatusString": "types",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'django_dbos' has no attribute {name!r}")


__all__ = [
    # Workflows
    "DBOS",
    "SetWorkflowAttributes",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "WorkflowHandle",
    # Queues
    "Queue",
    "SetEnqueueOptions",
    "Debouncer",
    # From outside the application
    "DBOSClient",
    "DebouncerClient",
    # Value types
    "Alert",
    "QueueStatus",
    "StepInfo",
    "UpgradeBlock",
    "UpgradeCheck",
    "VersionInfo",
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
    "DBOSPayloadExpiredError",
    "DBOSQueueDeduplicatedError",
    "DBOSSerializationError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowActiveError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError",
]
