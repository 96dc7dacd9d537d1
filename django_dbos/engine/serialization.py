"""Turning arguments, results and errors into text for the system tables, and back.

JSON is the default: readable in the admin, safe to load, usable from other languages. Types
JSON lacks (datetimes, decimals, UUIDs, bytes, sets, dataclasses) are written as small tagged
objects. Pickle is used only when the project opts in, and a pickle payload is refused otherwise.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import importlib
import json
import pickle
import traceback
import uuid
from typing import Any, Protocol

from django.utils.module_loading import import_string

from .. import conf
from ..errors import DBOSException, DBOSSerializationError

TAG = "__dbos__"
PICKLE_PREFIX = "pickle:"


class Serializer(Protocol):
    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


def _import_qualname(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: Any) -> Any:
    """Return a JSON-native stand-in for a value the json module cannot write."""
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, datetime.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {TAG: "timedelta", "v": value.total_seconds()}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, set | frozenset):
        return {TAG: "set", "v": list(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "cls": _qualified(type(value)), "v": fields}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _decode(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    value = obj.get("v")
    if tag == "datetime":
        return datetime.datetime.fromisoformat(value)
    if tag == "date":
        return datetime.date.fromisoformat(value)
    if tag == "time":
        return datetime.time.fromisoformat(value)
    if tag == "timedelta":
        return datetime.timedelta(seconds=value)
    if tag == "decimal":
        return decimal.Decimal(value)
    if tag == "uuid":
        return uuid.UUID(value)
    if tag == "bytes":
        return base64.b64decode(value)
    if tag == "set":
        return set(value)
    if tag == "dataclass":
        cls = _import_qualname(obj["cls"])
        if not dataclasses.is_dataclass(cls):
            raise DBOSSerializationError(f"{obj['cls']} is not a dataclass.")
        return cls(**value)
    return obj


class JSONSerializer:
    """JSON with tagged objects for the common Python types JSON lacks."""

    def dumps(self, value: Any) -> str:
        return json.dumps(value, default=_encode, separators=(",", ":"))

    def loads(self, text: str) -> Any:
        if text.startswith(PICKLE_PREFIX):
            raise DBOSSerializationError(
                "This value was written with pickle, but pickle is not enabled. Set "
                'DBOS["SERIALIZER"] = "pickle" only if every writer of the system tables is '
                "trusted."
            )
        return json.loads(text, object_hook=_decode)


class PickleSerializer:
    """Pickle, base64-encoded; for projects that pass objects JSON cannot hold."""

    def dumps(self, value: Any) -> str:
        return PICKLE_PREFIX + base64.b64encode(pickle.dumps(value)).decode("ascii")

    def loads(self, text: str) -> Any:
        if not text.startswith(PICKLE_PREFIX):
            return JSONSerializer().loads(text)
        return pickle.loads(base64.b64decode(text[len(PICKLE_PREFIX) :]))


_serializer_cache: tuple[str, Serializer] | None = None


def serializer() -> Serializer:
    """Return the serializer named by DBOS["SERIALIZER"]."""
    global _serializer_cache
    name = conf.get("SERIALIZER")
    if _serializer_cache is None or _serializer_cache[0] != name:
        if name == "json":
            instance: Serializer = JSONSerializer()
        elif name == "pickle":
            instance = PickleSerializer()
        else:
            instance = import_string(name)()
        _serializer_cache = (name, instance)
    return _serializer_cache[1]


def dumps(value: Any, what: str = "value") -> str:
    """Serialize a value, raising DBOSSerializationError with a message that names it."""
    try:
        return serializer().dumps(value)
    except DBOSSerializationError:
        raise
    except Exception as exc:
        raise DBOSSerializationError(
            f"Cannot serialize the {what}: {exc}. Pass JSON-compatible values (or dates, "
            "decimals, UUIDs, bytes, sets, dataclasses), or enable pickle in DBOS['SERIALIZER']."
        ) from exc


def loads(text: str | None) -> Any:
    """Deserialize a stored value; None stays None."""
    if text is None:
        return None
    try:
        return serializer().loads(text)
    except DBOSSerializationError:
        raise
    except Exception as exc:
        raise DBOSSerializationError(f"Cannot deserialize a stored value: {exc}") from exc


def dumps_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return dumps({"args": list(args), "kwargs": kwargs}, "workflow arguments")


def loads_arguments(text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    value = loads(text) or {}
    return tuple(value.get("args", ())), dict(value.get("kwargs", {}))


def dumps_error(exc: BaseException) -> str:
    """Record an exception as its class, message, arguments and traceback."""
    try:
        args = json.loads(json.dumps(list(exc.args), default=_encode))
    except Exception:
        args = [str(exc)]
    record = {
        "type": _qualified(type(exc)),
        "message": str(exc),
        "args": args,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    return json.dumps(record, default=str)


def loads_error(text: str) -> BaseException:
    """Rebuild a recorded exception as its own class when that class can be imported."""
    try:
        record = json.loads(text)
    except ValueError:
        return DBOSException(text)
    try:
        cls = _import_qualname(record["type"])
        args = json.loads(json.dumps(record.get("args", [])), object_hook=_decode)
        exc = cls(*args)
        if not isinstance(exc, BaseException):
            raise TypeError
    except Exception:
        exc = DBOSException(f"{record.get('type')}: {record.get('message')}")
    exc.__dbos_traceback__ = record.get("traceback", "")  # type: ignore[attr-defined]
    return exc
