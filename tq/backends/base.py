"""The result backend interface, and the parts every backend shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from kombu.serialization import dumps, loads, prepare_accept_content

from .. import states
from ..config import coerce_seconds
from ..errors import BackendError, ChordError
from ..protocol import build_result_meta
from ..wire_errors import exception_from_meta, exception_to_meta

if TYPE_CHECKING:
    from ..app import App
    from ..protocol import TaskRequest

#: Key prefixes, as Celery's key-value backends name them.
TASK_KEY_PREFIX = "celery-task-meta-"
GROUP_KEY_PREFIX = "celery-taskset-meta-"

#: The marker a stored group meta is written with: a state that a SUCCESS guard lets overwrite.
GROUP_STATE = "GROUP"

#: Polling backends start fast (a task that takes 1 ms should not wait 500 ms) and back off.
POLL_START_S = 0.001
POLL_MAX_S = 0.1

#: A backend that cannot be reached (connection refused or lost) is tried again for this long
#: before the operation fails: results written while it restarts are not lost.
UNAVAILABLE_RETRY_S = 30.0
#: The first wait before trying an unreachable backend again; it doubles up to the maximum.
UNAVAILABLE_BACKOFF_S = 0.1
UNAVAILABLE_BACKOFF_MAX_S = 1.0

T = TypeVar("T")


def retry_unavailable(
    call: Callable[[], T],
    is_unavailable: Callable[[BaseException], bool],
    *,
    deadline: float | None = None,
) -> T:
    """Return call(), trying again with back-off while it fails because the backend is away.

    Gives up (re-raises) at `deadline` (time.monotonic()), or UNAVAILABLE_RETRY_S after the
    first failure when there is none. Other errors are raised at once.
    """
    delay = UNAVAILABLE_BACKOFF_S
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            if deadline is None:
                deadline = time.monotonic() + UNAVAILABLE_RETRY_S
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, UNAVAILABLE_BACKOFF_MAX_S)


@dataclass(frozen=True)
class ChordPart:
    """One finished chord header task, as the chord's bookkeeping recorded it."""

    task_id: str
    state: str
    result: Any
    name: str | None = None


@dataclass(frozen=True)
class ChordReady:
    """What the worker storing a chord's last header result finds: the values, or a failure."""

    values: list[Any] = field(default_factory=list)
    error: ChordError | None = None


def join_chord_parts(parts: Iterable[ChordPart]) -> ChordReady:
    """Return the header values in order, or a ChordError naming the first failed member."""
    values = []
    for part in parts:
        if part.state in states.PROPAGATE_STATES:
            exc = exception_from_meta(part.result)
            who = f"{part.name}[{part.task_id}]" if part.name else part.task_id
            return ChordReady(error=ChordError(f"Dependency {who} raised {exc!r}"))
        values.append(part.result)
    return ChordReady(values=values)


def part_result(result: Any, state: str) -> Any:
    """Return a header task's outcome in the form chord bookkeeping stores (exceptions as meta)."""
    if state in states.EXCEPTION_STATES and isinstance(result, BaseException):
        return exception_to_meta(result)
    return result


class Backend:
    """Stores task results (worker side) and reads them (client side)."""

    #: Does get() wait on a push from the backend instead of polling?
    pushes_results = False

    def __init__(self, app: App, url: str | None = None) -> None:
        self.app = app
        self.url = url
        conf = app.conf
        self.serializer = conf.result_serializer
        self.accept = prepare_accept_content(conf.result_accept_content or conf.accept_content)
        self.expires_s = coerce_seconds(conf.result_expires, "result_expires")
        try:
            self.content_type, self.content_encoding, _ = dumps(None, serializer=self.serializer)
        except Exception:
            raise BackendError(f"unknown result_serializer {self.serializer!r}") from None

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, meta: Any) -> bytes | str:
        _content_type, _encoding, payload = dumps(meta, serializer=self.serializer)
        return payload

    def decode(self, payload: bytes | str) -> dict[str, Any]:
        return loads(payload, self.content_type, self.content_encoding, accept=self.accept)

    # -- writing (worker side) ---------------------------------------------------------------

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: TaskRequest | None = None,
        *,
        worker: str | None = None,
    ) -> None:
        """Store one state of a task."""
        if isinstance(result, BaseException):
            result = exception_to_meta(result)
        extended = None
        if request is not None and self.app.conf.result_extended:
            extended = {
                "name": request.name,
                "args": request.args,
                "kwargs": request.kwargs,
                "worker": worker,
                "retries": request.retries,
                "queue": request.delivery_info.get("routing_key"),
            }
        meta = build_result_meta(
            task_id,
            state,
            result,
            traceback,
            group_id=request.group_id if request else None,
            parent_id=request.parent_id if request else None,
            extended=extended,
        )
        self.write_meta(task_id, meta, request)

    def write_meta(self, task_id: str, meta: dict[str, Any], request: TaskRequest | None) -> None:
        raise NotImplementedError

    # -- reading (client side) ---------------------------------------------------------------

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        """Return the latest meta of a task without waiting (PENDING if unknown)."""
        raise NotImplementedError

    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        """Wait until the task is ready; poll with a backoff capped at `interval`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_START_S
        cap = max(POLL_START_S, min(interval, POLL_MAX_S))
        while True:
            meta = self.get_task_meta(task_id)
            if meta.get("status") in states.READY_STATES:
                return meta
            if deadline is not None and time.monotonic() >= deadline:
                raise_timeout()
            sleep_s = (
                delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            )
            time.sleep(sleep_s)
            delay = min(cap, delay * 2)

    def forget(self, task_id: str) -> None:
        """Delete a stored result."""
        raise NotImplementedError

    def get_many_meta(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Return the latest meta of several tasks without waiting."""
        return {task_id: self.get_task_meta(task_id) for task_id in task_ids}

    def wait_for_many(
        self,
        task_ids: list[str],
        timeout: float | None = None,
        interval: float = 0.5,
        stop_on_failure: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every task is ready (or one failed, with stop_on_failure); return metas."""
        deadline = None if timeout is None else time.monotonic() + timeout
        found: dict[str, dict[str, Any]] = {}
        for task_id in task_ids:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            meta = self.wait_for(task_id, timeout=remaining, interval=interval)
            found[task_id] = meta
            if stop_on_failure and meta.get("status") in states.PROPAGATE_STATES:
                break
        return found

    # -- groups and chords -------------------------------------------------------------------

    def save_group(self, group_id: str, group_tuple: Any) -> None:
        """Store a group's result tuple under celery-taskset-meta-<id>."""
        raise self._no_groups("save")

    def restore_group(self, group_id: str) -> Any:
        """Return a stored group's result tuple, or None."""
        raise self._no_groups("restore")

    def delete_group(self, group_id: str) -> None:
        """Delete a stored group."""
        raise self._no_groups("delete")

    def _no_groups(self, verb: str) -> BackendError:
        return BackendError(
            f"cannot {verb} a group with the {type(self).__name__}: it keeps no shared "
            "state; use a redis:// or sqlite:// result backend"
        )

    def ensure_chords_allowed(self) -> None:
        """Raise if this backend cannot run chords."""

    def set_chord_size(self, group_id: str, size: int) -> None:
        """Record how many header parts a chord waits for (the client, before sending them)."""
        raise NotImplementedError

    def on_chord_part_return(
        self, request: TaskRequest, state: str, result: Any
    ) -> ChordReady | None:
        """Record one finished header task; return ChordReady to the one that finishes it."""
        raise NotImplementedError

    def on_task_call(self, producer: Any) -> None:
        """Prepare for a task about to be sent (the rpc backend declares its reply queue)."""

    def close(self) -> None:
        """Release connections."""


def pending_meta(task_id: str) -> dict[str, Any]:
    """Return the meta of a task nobody has reported on yet."""
    return {
        "status": states.PENDING,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": task_id,
    }


def raise_timeout() -> None:
    from ..errors import TimeoutError as TQTimeoutError

    raise TQTimeoutError("The operation timed out.")


class DisabledBackend(Backend):
    """What an app without result_backend has: storing is a no-op, reading is an error."""

    def write_meta(self, task_id: str, meta: dict[str, Any], request: TaskRequest | None) -> None:
        return None

    def _refuse(self) -> BackendError:
        return BackendError(
            "no result backend is configured: set result_backend (e.g. backend='redis://' "
            "in App(...) or TQ_RESULT_BACKEND) to read task results"
        )

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        raise self._refuse()

    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        raise self._refuse()

    def forget(self, task_id: str) -> None:
        raise self._refuse()

    def ensure_chords_allowed(self) -> None:
        raise BackendError(
            "a chord needs a result backend to count its header tasks: set result_backend "
            "(e.g. redis://) or use the embedded default"
        )


class KeyValueBackend(Backend):
    """A backend over a key-value store: one key per task, SUCCESS never overwritten."""

    def get(self, key: str) -> bytes | str | None:
        raise NotImplementedError

    def set(self, key: str, value: bytes | str, state: str) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def write_meta(self, task_id: str, meta: dict[str, Any], request: TaskRequest | None) -> None:
        self.set(TASK_KEY_PREFIX + task_id, self.encode(meta), meta["status"])

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        payload = self.get(TASK_KEY_PREFIX + task_id)
        if payload is None:
            return pending_meta(task_id)
        return self.decode(payload)

    def forget(self, task_id: str) -> None:
        self.delete(TASK_KEY_PREFIX + task_id)

    def save_group(self, group_id: str, group_tuple: Any) -> None:
        self.set(GROUP_KEY_PREFIX + group_id, self.encode({"result": group_tuple}), GROUP_STATE)

    def restore_group(self, group_id: str) -> Any:
        payload = self.get(GROUP_KEY_PREFIX + group_id)
        if payload is None:
            return None
        return self.decode(payload).get("result")

    def delete_group(self, group_id: str) -> None:
        self.delete(GROUP_KEY_PREFIX + group_id)
