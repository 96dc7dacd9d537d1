"""The demo shop's workflows (autodiscovered by django_dbos, like admin.py)."""

import time

from django_dbos import DBOS

from .models import LedgerEntry


@DBOS.step()
def append_line(path: str, line: str, pause: float = 0.0) -> str:
    """Append a line to a file: a side effect that shows how often a step really ran."""
    time.sleep(pause)
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


@DBOS.transaction()
def write_ledger_entry(reference: str, amount: int) -> int:
    """Write an app row; its checkpoint commits in the same transaction."""
    return LedgerEntry.objects.create(reference=reference, amount=amount).pk


@DBOS.workflow()
def ten_step_journal(path: str, pause: float = 0.0) -> int:
    """Ten steps that each append a line, with a ledger transaction half way."""
    for number in range(1, 11):
        append_line(path, f"step {number}", pause)
        if number == 5:
            write_ledger_entry(path, 5)
    return 10
