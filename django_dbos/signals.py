"""Signals sent by the engine as workflows run in this process.

The sender is the workflow's registered name, so a receiver can listen to one workflow:
`@receiver(workflow_finished, sender="shop.workflows.checkout")`. Receivers run in the thread
that runs the workflow; an exception in a receiver is logged and does not affect the workflow.
"""

from django.dispatch import Signal

# Sent when an execution of a workflow begins (also a recovered or resumed one).
# Arguments: workflow_id.
workflow_started = Signal()

# Sent when an execution recorded the workflow's outcome.
# Arguments: workflow_id, status ("SUCCESS", "ERROR" or "CANCELLED").
workflow_finished = Signal()

# Sent by the worker that checks DBOS["ALERTS"] when an alert rule begins firing, and when it
# stops. Sender: the rule's kind. Arguments: alert (a django_dbos.Alert: .id, .name,
# .kind, .change, .message, .at). Each transition is sent once, or, if the worker dies between
# sending it and recording that it did, once more by the next worker (docs/monitoring.md#alerts).
alert_raised = Signal()
alert_resolved = Signal()
