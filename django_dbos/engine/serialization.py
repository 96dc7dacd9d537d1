"""Turning arguments, results and errors into text for the system tables, and back.

JSON is the default: readable in the admin, safe to load, usable from other languages. Types
JSON lacks or would change (datetimes, decimals, UUIDs, bytes, tuples, sets, dataclasses, dicts
with non-string keys) are written as small tagged objects, so values come back as they went in.
Pickle is used only when the project opts in, and a pickle payload is refused otherwise.
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


def import_qualname(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_SCALARS = (str, int, float, bool, type(None))


def _to_json(value: Any) -> Any:
    """Return a JSON-native copy of a value, tagging what JSON would lose or cannot hold.

    Tuples, sets, dicts with keys other than strings, and user dicts that happen to use the tag
    key are tagged too, so that a recovered workflow sees exactly the values the first run saw.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        if TAG not in value and all(type(key) is str for key in value):
            return {key: _to_json(item) for key, item in value.items()}
        return {TAG: "dict", "v": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_to_json(item) for item in value]}
    if isinstance(value, frozenset):
        return {TAG: "frozenset", "v": [_to_json(item) for item in value]}
    if isinstance(value, set):
        return {TAG: "set", "v": [_to_json(item) for item in value]}
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, datetime.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "cls": qualified(type(value)), "v": fields}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_DECODERS: dict[str, Any] = {
    "dict": lambda pairs: {key: item for key, item in pairs},
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "timedelta": lambda parts: datetime.timedelta(*parts),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "bytes": base64.b64decode,
}


def _decode(obj: dict[str, Any]) -> Any:
    """Rebuild a tagged object (json calls this innermost first, so items are rebuilt already)."""
    tag = obj.get(TAG)
    if tag is None:
        return obj
    if tag == "dataclass":
        cls = import_qualname(obj["cls"])
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise DBOSSerializationError(f"{obj['cls']} is not a dataclass.")
        return cls(**obj["v"])
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise DBOSSerializationError(f"Unknown tagged value {tag!r}.")
    return decoder(obj["v"])


class JSONSerializer:
    """JSON with tagged objects for the common Python types JSON lacks."""

    def dumps(self, value: Any) -> str:
        # allow_nan=False: NaN and infinities are not JSON; other readers would choke on them.
        return json.dumps(_to_json(value), separators=(",", ":"), allow_nan=False)

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
    """Deserialize a stored value; None stays None, and so does "", which is what the retention
    policy leaves of a value it scrubbed from a column that cannot be null."""
    if not text:
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
        args = _to_json(list(exc.args))
    except Exception:
        args = [str(exc)]
    record = {
        "type": qualified(type(exc)),
        "message": str(exc),
        "args": args,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    return json.dumps(record, default=str)


def expired_error(text: str) -> str:
    """A recorded exception with its message, arguments and traceback dropped: its class stays,
    so that one can still tell what kind of failure it was."""
    try:
        kind = json.loads(text)["type"]
    except (ValueError, KeyError, TypeError):
        kind = qualified(DBOSException)
    return json.dumps({"type": kind, "message": "", "args": [], "traceback": ""})


def loads_error(text: str) -> BaseException:
    """Rebuild a recorded exception as its own class when that class can be imported."""
    try:
        record = json.loads(text, object_hook=_decode)
    except (ValueError, DBOSSerializationError):
        return DBOSException(text)
    try:
        cls = import_qualname(record["type"])
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{record['type']} is not an exception class")
        exc = cls(*record.get("args", []))
    except Exception:
        exc = DBOSException(f"{record.get('type')}: {record.get('message')}")
    # The recorded traceback, on an exception whose class does not declare it.
    exc.__dbos_traceback__ = record.get("traceback", "")  # type: ignore[attr-defined]
    return exc
