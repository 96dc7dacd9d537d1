from django.db import models


class Order(models.Model):
    """An order of the demo shop."""

    status = models.CharField(max_length=20, default="new")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.status})"


class LedgerEntry(models.Model):
    """A row written by a @DBOS.transaction: it must exist exactly once per workflow."""

    reference = models.CharField(max_length=255)
    amount = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.reference}: {self.amount}"
