"""The forms people answer the shop's workflows with, in the admin's inbox."""

from decimal import Decimal

from django import forms


class RefundDecisionForm(forms.Form):
    """A person's decision on a refund request (DBOS.recv(..., form=RefundDecisionForm))."""

    approved = forms.BooleanField(required=False, label="Approve the refund")
    amount = forms.DecimalField(max_digits=8, decimal_places=2, min_value=Decimal("0.01"))
    refund_on = forms.DateField(help_text="When the money goes back: YYYY-MM-DD.")
    note = forms.CharField(required=False, max_length=200)
