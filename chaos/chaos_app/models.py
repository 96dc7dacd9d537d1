"""The application rows the chaos workflows write in their transactions."""

from django.db import models


class LedgerRow(models.Model):
    """Written by `book`, a @DBOS.transaction: one row per (workflow, function id), exactly.

    No unique constraint on purpose: a transaction that committed twice must show up as two
    rows, not as an error that hides it.
    """

    workflow_id = models.CharField(max_length=255, db_index=True)
    function_id = models.IntegerField()
    amount = models.IntegerField()
    pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "chaos_ledger"

    def __str__(self) -> str:
        return f"{self.workflow_id} #{self.function_id}: {self.amount}"
