"""Replay in tests: fail, with the difference, when recorded workflows no longer replay.

The replayer itself is the engine's (`django_dbos.engine.replay`): upgrades and
`dbos check-deploy` use the same one.
"""

from __future__ import annotations

from ..engine.replay import Replay, replay

__all__ = ["Replay", "ReplayMismatch", "assert_replays", "replay"]


class ReplayMismatch(AssertionError):
    """The current code would take another operation than the recorded one at some position."""


def assert_replays(workflow_id: str, *, timeout: float = 30.0) -> Replay:
    """Fail, with the difference, unless the recorded workflow replays on the current code."""
    found = replay(workflow_id, timeout=timeout)
    if not found.ok:
        raise ReplayMismatch(found.report())
    return found
