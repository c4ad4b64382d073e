"""The result backend interface, and the parts every backend shares."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kombu.serialization import dumps, loads, prepare_accept_content

from .. import states
from ..config import coerce_seconds
from ..errors import BackendError
from ..protocol import build_result_meta, exception_to_meta

if TYPE_CHECKING:
    from ..app import App
    from ..protocol import TaskRequest

#: Key prefixes, as Celery's key-value backends name them.
TASK_KEY_PREFIX = "celery-task-meta-"
GROUP_KEY_PREFIX = "celery-taskset-meta-"

#: Polling backends start fast (a task that takes 1 ms should not wait 500 ms) and back off.
POLL_START_S = 0.001
POLL_MAX_S = 0.1


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

    def encode(self, meta: dict[str, Any]) -> bytes | str:
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
