"""Exceptions in results as Celery writes them: {exc_type, exc_message, exc_module}, both ways."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from . import errors
from .protocol import saferepr

#: tq errors that have a Celery twin, named as Celery names them on the wire so
#: Celery clients rebuild their own classes and tq clients rebuild tq's.
_WIRE_NAMES: dict[type[BaseException], tuple[str, str]] = {
    errors.WorkerLostError: ("billiard.exceptions", "WorkerLostError"),
    errors.TimeLimitExceeded: ("billiard.exceptions", "TimeLimitExceeded"),
    errors.SoftTimeLimitExceeded: ("billiard.exceptions", "SoftTimeLimitExceeded"),
    errors.TaskRevokedError: ("celery.exceptions", "TaskRevokedError"),
    errors.ChordError: ("celery.exceptions", "ChordError"),
    errors.MaxRetriesExceededError: ("celery.exceptions", "MaxRetriesExceededError"),
    errors.NotRegistered: ("celery.exceptions", "NotRegistered"),
    errors.Retry: ("celery.exceptions", "Retry"),
    errors.Reject: ("celery.exceptions", "Reject"),
    errors.TimeoutError: ("celery.exceptions", "TimeoutError"),
}
_FROM_WIRE = {wire: cls for cls, wire in _WIRE_NAMES.items()}


def exception_to_meta(exc: BaseException) -> dict[str, Any]:
    """Serialise an exception as Celery's {exc_type, exc_message, exc_module}."""
    cls = type(exc)
    module, qualname = _WIRE_NAMES.get(cls, (cls.__module__, cls.__qualname__))
    return {
        "exc_type": qualname,
        "exc_message": list(_jsonable_args(exc.args)),
        "exc_module": module,
    }


def _jsonable_args(args: tuple[Any, ...]) -> list[Any]:
    out = []
    for arg in args:
        if arg is None or isinstance(arg, (str, int, float, bool, list, dict)):
            out.append(arg)
        else:
            out.append(saferepr(arg))
    return out


def exception_from_meta(meta: Any) -> BaseException:
    """Rebuild an exception from its meta; refuse classes that are not exceptions."""
    if isinstance(meta, BaseException):
        return meta
    if not isinstance(meta, dict) or "exc_type" not in meta:
        return Exception(meta)
    module_name = meta.get("exc_module") or "builtins"
    type_name = str(meta["exc_type"])
    message = meta.get("exc_message") or []
    if not isinstance(message, (list, tuple)):
        message = [message]
    cls = _FROM_WIRE.get((module_name, type_name)) or _find_exception_class(module_name, type_name)
    try:
        return cls(*message)
    except Exception:
        exc = cls.__new__(cls)
        exc.args = tuple(message)
        return exc


def _find_exception_class(module_name: str, type_name: str) -> type[BaseException]:
    try:
        target: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
        for part in type_name.split("."):
            target = getattr(target, part)
    except Exception:
        return type(type_name.rsplit(".", 1)[-1], (Exception,), {"__module__": module_name})
    if not (isinstance(target, type) and issubclass(target, BaseException)):
        raise errors.SecurityError(
            f"result names {module_name}.{type_name} as its exception, which is not an exception class"
        )
    return target
