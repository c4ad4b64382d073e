"""Re-send a task: the same name, arguments and queue as a task that ran, under a new id."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import TQError

if TYPE_CHECKING:
    from .app import App

#: Workers write argsrepr with reprlib (protocol.saferepr), which shortens a string whose repr
#: passes this many characters to "head...tail" and a long list to "[0, 1, ...]": both still
#: parse, so a parsed string this long, or an Ellipsis, means the event's copy is not the value.
ABBREVIATED_REPR_CHARS = 256


@dataclass(frozen=True)
class TaskCall:
    """What it takes to send a task again."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    #: The queue it went to, when known for sure (None: the app's routes decide, as they did).
    queue: str | None = None
    #: Where the arguments were found, said in messages: "result backend" or "events".
    source: str = "result backend"

    def describe(self, limit: int = 60) -> str:
        """`tasks.add(2, 2)`, cut to `limit` characters."""
        parts = [repr(arg) for arg in self.args]
        parts += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        text = f"{self.name}({', '.join(parts)})"
        return text if len(text) <= limit else text[: limit - 1] + "…"


def call_from_backend(app: App, task_id: str) -> TaskCall | None:
    """The call as the result backend kept it (with result_extended), or None."""
    kept = app.AsyncResult(task_id)
    name, args, kwargs = kept.name, kept.args, kept.kwargs
    if not name or not isinstance(args, list | tuple):
        return None
    kwargs = kwargs or {}
    if not isinstance(kwargs, dict):
        return None
    return TaskCall(str(name), list(args), dict(kwargs), kept.queue or None)


def call_from_reprs(
    name: str | None, args_repr: str | None, kwargs_repr: str | None, *, task_id: str
) -> TaskCall:
    """The call rebuilt from the argument reprs an event carried (literals only)."""
    if not name:
        raise TQError(f"cannot re-send {task_id}: its task name was never seen")
    try:
        args = ast.literal_eval(args_repr or "()")
        kwargs = ast.literal_eval(kwargs_repr or "{}")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise TQError(
            f"cannot re-send {task_id}: its arguments are not plain literals or were cut "
            "in the event; with result_extended=True the result backend keeps them whole"
        ) from None
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise TQError(f"cannot re-send {task_id}: its arguments {args_repr!r} are not a tuple")
    if _abbreviated(args) or _abbreviated(kwargs):
        raise TQError(
            f"cannot re-send {task_id}: the event carried its arguments abbreviated; "
            "with result_extended=True the result backend keeps them whole"
        )
    return TaskCall(name, list(args), kwargs, None, source="events")


def _abbreviated(value: Any) -> bool:
    """True when a parsed repr shows reprlib's shortening (an Ellipsis, a string cut in two)."""
    if value is Ellipsis:
        return True
    if isinstance(value, str | bytes):
        return len(repr(value)) >= ABBREVIATED_REPR_CHARS
    if isinstance(value, dict):
        return any(_abbreviated(key) or _abbreviated(item) for key, item in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_abbreviated(item) for item in value)
    return False


def find_call(
    app: App,
    task_id: str,
    *,
    name: str | None = None,
    args_repr: str | None = None,
    kwargs_repr: str | None = None,
) -> TaskCall:
    """How task_id was called: the result backend's record first, else the event's reprs."""
    try:
        kept = call_from_backend(app, task_id)
    except Exception:  # noqa: BLE001 - no backend, or it is away: the event's reprs may do
        kept = None
    if kept is not None:
        return kept
    if name is None and args_repr is None:
        raise TQError(
            f"cannot re-send {task_id}: the result backend does not know its arguments "
            "(set result_extended=True to keep them); the console can re-send tasks it saw"
        )
    return call_from_reprs(name, args_repr, kwargs_repr, task_id=task_id)


def resend(app: App, call: TaskCall) -> str:
    """Send the call again; return the new task id."""
    return str(app.send_task(call.name, call.args, call.kwargs, queue=call.queue).id)
