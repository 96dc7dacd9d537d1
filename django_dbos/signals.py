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
