"""The Django form a person answers a recv with (`DBOS.recv(..., form=RefundForm)`).

The wait's row names the form as "module:QualName", so that the admin of any process can
import it, render it, and send its cleaned_data to the workflow.
"""

from __future__ import annotations

from typing import Any

from django import forms

from ..errors import DBOSException, DBOSInvalidArgumentError
from . import serialization, validation


def form_path(form: Any) -> str:
    """The name a wait's row keeps of a recv's form: "module:QualName", or "" without one."""
    if form is None:
        return ""
    if not (isinstance(form, type) and issubclass(form, forms.BaseForm)):
        raise DBOSInvalidArgumentError(
            f"form must be a Django form class (a subclass of django.forms.Form), not {form!r}: "
            "pass the class itself, as in DBOS.recv('approval', form=ApprovalForm)."
        )
    path = serialization.qualified(form)
    try:
        found = serialization.import_qualname(path)
    except (ImportError, AttributeError):
        found = None
    if found is not form:
        raise DBOSInvalidArgumentError(
            f"The form {form.__qualname__} cannot be imported as {path!r} (it is defined inside "
            "a function, or under another name): define it at the top level of a module, so "
            "that the admin can import it."
        )
    return validation.name(path, "form's module and name")


def load_form(path: str) -> type[forms.BaseForm]:
    """The form class a wait's row names; DBOSException when this code cannot import it."""
    try:
        form = serialization.import_qualname(path)
    except (ImportError, AttributeError) as exc:
        raise DBOSException(
            f"The form {path!r} this workflow waits with cannot be imported here ({exc}): "
            "deploy the code that defines it, or answer with DBOS.send()."
        ) from None
    if not (isinstance(form, type) and issubclass(form, forms.BaseForm)):
        raise DBOSException(f"{path!r} is not a Django form class: answer with DBOS.send().")
    return form
