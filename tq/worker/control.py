"""Remote-control handlers: what a worker does when a pidbox command reaches it."""

from __future__ import annotations

import logging
import signal as signal_module
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import states
from ..control import make_mailbox
from ..errors import TaskRevokedError
from .executor import store

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("tq.worker")

#: Revoked ids are remembered up to this many (oldest forgotten first), as Celery's LimitedSet.
REVOKED_IDS_MAX = 50_000


class BoundedIdSet:
    """A set of task ids that forgets the oldest past a maximum size."""

    def __init__(self, maxlen: int = REVOKED_IDS_MAX) -> None:
        self.maxlen = maxlen
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, task_id: str) -> None:
        self._ids[task_id] = time.time()
        self._ids.move_to_end(task_id)
        while len(self._ids) > self.maxlen:
            self._ids.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __iter__(self) -> Iterable[str]:  # type: ignore[override]
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}


def handler(fun: Handler) -> Handler:
    """Register a remote-control command under its function's name."""
    HANDLERS[fun.__name__] = fun
    return fun


def _signal_number(name: str | int | None) -> int:
    if name is None:
        return signal_module.SIGTERM
    if isinstance(name, int):
        return name
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(signal_module.Signals[name])


@handler
def ping(worker: Worker, **_kw: Any) -> dict[str, Any]:
    return {"ok": "pong"}


@handler
def revoke(
    worker: Worker,
    task_id: str | list[str],
    terminate: bool = False,
    signal: str | None = None,
    **_kw: Any,
) -> dict[str, Any]:
    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    for one in ids:
        worker.revoked_ids.add(one)
    if terminate:
        signum = _signal_number(signal)
        killed = [one for one in ids if worker.terminate_task(one, signum)]
        return {"ok": f"terminate: {', '.join(killed)}" if killed else "terminate: tasks unknown"}
    # Record REVOKED for tasks this worker holds, so clients see it without waiting.
    for held in list(worker.reserved):
        if held.request.id in ids:
            worker.reserved.remove(held)
            logger.info("Discarding revoked task: %s[%s]", held.request.name, held.request.id)
            store(
                worker.app,
                held.request,
                TaskRevokedError("revoked"),
                states.REVOKED,
                None,
                worker.hostname,
            )
            held.ack()
    return {"ok": f"tasks {set(ids)!r} flagged as revoked"}


def listen(worker: Worker, connection: Any) -> Any:
    """Start consuming the worker's pidbox queue on the connection."""
    mailbox = make_mailbox(worker.app)(connection)
    node = mailbox.Node(worker.hostname, state=worker, handlers=HANDLERS)
    node.channel = connection.channel()
    return node.listen(callback=lambda body, message: _on_command(node, body, message))


def _on_command(node: Any, body: Any, message: Any) -> None:
    expires = (message.headers or {}).get("expires")
    if expires and time.time() > expires:
        return  # the client stopped waiting: running it now would surprise its sender
    try:
        node.handle_message(body, message)
    except Exception as exc:
        logger.error("remote control command failed: %r", exc)
