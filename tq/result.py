"""AsyncResult: the handle a client holds on a sent task and its outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import states
from .errors import TQError
from .protocol import parse_iso
from .task import current_request
from .wire_errors import exception_from_meta

if TYPE_CHECKING:
    from datetime import datetime

    from .app import App
    from .backends.base import Backend


def _raise_remote(meta: dict[str, Any]) -> None:
    exc = exception_from_meta(meta.get("result"))
    remote_traceback = meta.get("traceback")
    if remote_traceback and isinstance(exc, BaseException):
        exc.add_note(f"Remote traceback (task {meta.get('task_id')}):\n{remote_traceback}")
    raise exc


class AsyncResult:
    """The state and outcome of one task, read from the result backend."""

    def __init__(
        self,
        id: str,  # noqa: A002 - Celery's name
        *,
        app: App,
        backend: Backend | None = None,
        task_name: str | None = None,
        parent: Any = None,
    ) -> None:
        self.id = id
        self.app = app
        self._backend = backend
        self.task_name = task_name
        self.parent = parent
        self._cache: dict[str, Any] | None = None

    @property
    def backend(self) -> Backend:
        return self._backend or self.app.backend

    @property
    def task_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    # -- reading -----------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_task_meta(self.id)
        if meta.get("status") in states.READY_STATES:
            self._cache = meta
        return meta

    @property
    def state(self) -> str:
        """The task's state: PENDING until a worker reports one."""
        return self._meta().get("status", states.PENDING)

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception for a failed task."""
        meta = self._meta()
        if meta.get("status") in states.EXCEPTION_STATES:
            return exception_from_meta(meta.get("result"))
        return meta.get("result")

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed task, as the worker saw it."""
        return self._meta().get("traceback")

    @property
    def date_done(self) -> datetime | None:
        return parse_iso(self._meta().get("date_done"))

    @property
    def name(self) -> str | None:
        return self._meta().get("name") or self.task_name

    @property
    def args(self) -> Any:
        return self._meta().get("args")

    @property
    def kwargs(self) -> Any:
        return self._meta().get("kwargs")

    @property
    def worker(self) -> str | None:
        return self._meta().get("worker")

    @property
    def retries(self) -> int | None:
        return self._meta().get("retries")

    @property
    def queue(self) -> str | None:
        return self._meta().get("queue")

    @property
    def children(self) -> list[Any]:
        return self._meta().get("children") or []

    def ready(self) -> bool:
        """True once the task has succeeded, failed or been revoked."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        follow_parents: bool = True,
        **_ignored: Any,
    ) -> Any:
        """Wait for the task to be ready and return its value (or raise its exception)."""
        request = current_request()
        if disable_sync_subtasks and request is not None and request.in_worker:
            raise RuntimeError(
                "Never call result.get() within a task! Pass disable_sync_subtasks=False "
                "only if you know the result arrives without this worker's help."
            )
        if follow_parents and propagate and self.parent is not None:
            self.parent._raise_if_failed()
        meta = self._cache or self.backend.wait_for(self.id, timeout=timeout, interval=interval)
        if meta.get("status") in states.READY_STATES:
            self._cache = meta
        if meta.get("status") in states.PROPAGATE_STATES:
            if propagate:
                _raise_remote(meta)
            return exception_from_meta(meta.get("result"))
        return meta.get("result")

    wait = get

    def _raise_if_failed(self) -> None:
        if self.parent is not None:
            self.parent._raise_if_failed()
        meta = self._meta()
        if meta.get("status") in states.PROPAGATE_STATES:
            _raise_remote(meta)

    def forget(self) -> None:
        """Remove the stored result."""
        self._cache = None
        self.backend.forget(self.id)

    def maybe_throw(self, propagate: bool = True) -> None:
        """Raise the task's exception if it failed or was revoked (and propagate is on)."""
        meta = self._meta()
        if propagate and meta.get("status") in states.PROPAGATE_STATES:
            _raise_remote(meta)

    def revoke(self, terminate: bool = False, signal: str | None = None, **_ignored: Any) -> None:
        """Ask every worker not to run this task (and to kill it with `terminate`)."""
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)

    def as_tuple(self) -> tuple[Any, ...]:
        """Return ((id, parent_tuple), None), the form result_from_tuple reads."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return ((self.id, parent), None)


class EagerResult(AsyncResult):
    """The result of a task run in-process by Task.apply."""

    def __init__(
        self,
        id: str,
        value: Any,
        state: str,
        traceback: str | None = None,  # noqa: A002
        name: str | None = None,
    ) -> None:
        self.id = id
        self.task_name = name
        self.parent = None
        self._value = value
        self._state = state
        self._traceback = traceback
        self._cache = None

    def _meta(self) -> dict[str, Any]:
        from .wire_errors import exception_to_meta

        value = self._value
        if isinstance(value, BaseException):
            value = exception_to_meta(value)
        return {
            "status": self._state,
            "result": value,
            "traceback": self._traceback,
            "task_id": self.id,
        }

    @property
    def result(self) -> Any:
        return self._value

    info = result

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
        follow_parents: bool = True,
        **_ignored: Any,
    ) -> Any:
        if self._state in states.PROPAGATE_STATES and propagate:
            raise self._value
        return self._value

    def forget(self) -> None:
        raise TQError("an eager result is not stored, so there is nothing to forget")

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        raise TQError("an eager result has already run and cannot be revoked")


# GroupResult lives beside AsyncResult for the reader (`from tq.result import GroupResult`).
from .result_group import GroupResult, ResultSet, result_from_tuple  # noqa: E402

__all__ = ["AsyncResult", "EagerResult", "GroupResult", "ResultSet", "result_from_tuple"]
