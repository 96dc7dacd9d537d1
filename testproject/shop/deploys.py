"""Two kinds of parcels for the deploy tests (tests/test_upgrade.py): the code of the old or the
new deploy, as SHOP_DEPLOY_CODE says ("old" by default). Each step appends a line to a file, so
a test sees how often each one really ran, over every process.

- `parcel` changed compatibly: the new code adds a step after its waits.
- `letter` changed the order of its first two steps: an old execution cannot continue on it.
"""

import os

from django_dbos import DBOS, Queue

NEW_CODE = os.environ.get("SHOP_DEPLOY_CODE", "old") == "new"

deliveries = Queue("deliveries")


@DBOS.step()
def pack(path: str) -> str:
    return _log(path, "pack")


@DBOS.step()
def stamp(path: str) -> str:
    return _log(path, "stamp")


@DBOS.step()
def ship(path: str) -> str:
    return _log(path, "ship")


@DBOS.step()
def notify(path: str) -> str:
    return _log(path, "notify")


def _log(path: str, what: str) -> str:
    line = f"{DBOS.workflow_id} {what}"
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


@DBOS.workflow()
def parcel(path: str, pause: float) -> str:
    """Packed, then sleeps, then waits for "go", then shipped (and, new, notified)."""
    pack(path)
    DBOS.sleep(pause)
    DBOS.recv("go", timeout_seconds=120)
    ship(path)
    if NEW_CODE:
        notify(path)
    return "delivered"


@DBOS.workflow()
def letter(path: str) -> str:
    """Packed and stamped (stamped and packed, new), then waits for "go", then shipped."""
    if NEW_CODE:
        stamp(path)
        pack(path)
    else:
        pack(path)
        stamp(path)
    DBOS.recv("go", timeout_seconds=120)
    ship(path)
    return "posted"


@DBOS.workflow()
def bundle(path: str) -> str:
    """Starts a letter as its child, and waits for it."""
    return DBOS.start_workflow(letter, path).get_result()
