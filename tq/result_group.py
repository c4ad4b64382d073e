"""GroupResult and ResultSet: several results waited on together, values in member order."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import states
from .errors import TQError
from .result import AsyncResult, EagerResult, _raise_remote
from .task import current_request
from .wire_errors import exception_from_meta

if TYPE_CHECKING:
    from .app import App
    from .backends.base import Backend


def _guard_join_in_task(disable_sync_subtasks: bool) -> None:
    request = current_request()
    if disable_sync_subtasks and request is not None and request.in_worker:
        raise RuntimeError(
            "Never call result.get() within a task! Pass disable_sync_subtasks=False "
            "only if you know the result arrives without this worker's help."
        )


class ResultSet:
    """Several results handled as one: their states, and their values in member order."""

    def __init__(self, results: Iterable[Any], *, app: App | None = None) -> None:
        self.results: list[Any] = list(results)
        self.app = app or (self.results[0].app if self.results else None)

    @property
    def backend(self) -> Backend:
        if self.app is None:
            raise TQError("an empty result set has no app: pass app= when building it")
        return self.app.backend

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    # -- membership --------------------------------------------------------------------------

    def add(self, result: Any) -> None:
        """Add a result if it is not a member already."""
        if result not in self.results:
            self.results.append(result)

    def update(self, results: Iterable[Any]) -> None:
        """Add several results."""
        for result in results:
            self.add(result)

    def remove(self, result: Any) -> None:
        """Remove a result (or a task id); KeyError if it is not a member."""
        try:
            self.results.remove(result)
        except ValueError:
            raise KeyError(result) from None

    def discard(self, result: Any) -> None:
        """Remove a result if it is a member."""
        try:
            self.remove(result)
        except KeyError:
            pass

    def clear(self) -> None:
        self.results.clear()

    # -- states ------------------------------------------------------------------------------

    def _unknown(self) -> list[AsyncResult]:
        """Members whose final meta is not known here yet (and must be read or waited for)."""
        return [
            r
            for r in self.results
            if isinstance(r, AsyncResult) and not isinstance(r, EagerResult) and r._cache is None
        ]

    def _member_states(self) -> list[str]:
        leaves = self._unknown()
        fresh = self.backend.get_many_meta([r.id for r in leaves]) if leaves else {}
        found = []
        for member in self.results:
            if isinstance(member, ResultSet):
                found.append(member._summary_state())
                continue
            meta = member._cache or fresh.get(member.id) or member._meta()
            if meta.get("status") in states.READY_STATES:
                member._cache = meta
            found.append(meta.get("status", states.PENDING))
        return found

    def _summary_state(self) -> str:
        found = self._member_states()
        if all(state == states.SUCCESS for state in found):
            return states.SUCCESS
        failed = [state for state in found if state in states.PROPAGATE_STATES]
        if failed and all(state in states.READY_STATES for state in found):
            return failed[0]
        return states.PENDING

    def ready(self) -> bool:
        """True when every member is ready."""
        return all(state in states.READY_STATES for state in self._member_states())

    def successful(self) -> bool:
        """True when every member succeeded."""
        return all(state == states.SUCCESS for state in self._member_states())

    def failed(self) -> bool:
        """True when any member failed."""
        return any(state == states.FAILURE for state in self._member_states())

    def waiting(self) -> bool:
        """True when any member is not ready yet."""
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded (failed ones do not count, as in Celery)."""
        return sum(state == states.SUCCESS for state in self._member_states())

    def maybe_throw(self, propagate: bool = True) -> None:
        """Raise the first member failure (in member order), if any."""
        for member in self.results:
            member.maybe_throw(propagate=propagate)

    def _raise_if_failed(self) -> None:
        parent = getattr(self, "parent", None)
        if parent is not None:
            parent._raise_if_failed()
        if any(state in states.PROPAGATE_STATES for state in self._member_states()):
            self.maybe_throw()

    # -- waiting -----------------------------------------------------------------------------

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], None] | None = None,
        disable_sync_subtasks: bool = True,
        **_ignored: Any,
    ) -> list[Any]:
        """Wait for every member; return their values in member order (or raise a failure)."""
        _guard_join_in_task(disable_sync_subtasks)
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = [r.id for r in self._unknown()]
        metas = (
            {}
            if not waiting
            else self.backend.wait_for_many(
                waiting, timeout=timeout, interval=interval, stop_on_failure=propagate
            )
        )
        values = []
        for member in self.results:
            if isinstance(member, ResultSet):
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                values.append(
                    member.join(remaining, propagate, interval, callback, disable_sync_subtasks)
                )
                continue
            meta = member._meta() if isinstance(member, EagerResult) else None
            meta = meta or member._cache or metas.get(member.id)
            if meta is None or meta.get("status") not in states.READY_STATES:
                continue  # the wait ended early on a failure, which is raised below
            member._cache = meta
            value: Any = meta.get("result")
            if meta.get("status") in states.PROPAGATE_STATES:
                if propagate:
                    _raise_remote(meta)
                value = exception_from_meta(value)
            if callback is not None:
                callback(member.id, value)
            values.append(value)
        return values

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], None] | None = None,
        disable_sync_subtasks: bool = True,
        **_ignored: Any,
    ) -> list[Any]:
        """Wait for every member and return their values in order (see join)."""
        return self.join(timeout, propagate, interval, callback, disable_sync_subtasks)

    join_native = join

    # -- acting ------------------------------------------------------------------------------

    def revoke(self, terminate: bool = False, signal: str | None = None, **_ignored: Any) -> None:
        """Ask every worker not to run any member (and to kill running ones with terminate)."""
        ids = [leaf.id for leaf in self._leaves()]
        if ids and self.app is not None:
            self.app.control.revoke(ids, terminate=terminate, signal=signal)

    def forget(self) -> None:
        """Remove every member's stored result."""
        for member in self.results:
            member.forget()

    def _leaves(self) -> list[AsyncResult]:
        leaves: list[AsyncResult] = []
        for member in self.results:
            if isinstance(member, ResultSet):
                leaves.extend(member._leaves())
            else:
                leaves.append(member)
        return leaves


class GroupResult(ResultSet):
    """The results of a group (or a chord header), under the group's id."""

    def __init__(
        self,
        id: str,  # noqa: A002 - Celery's name
        results: Iterable[Any] = (),
        *,
        app: App | None = None,
        parent: Any = None,
    ) -> None:
        super().__init__(results, app=app)
        self.id = id
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[Any]:
        return self.results

    def as_tuple(self) -> tuple[Any, ...]:
        """Return ((id, parent_tuple), [member tuples]), the form result_from_tuple reads."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return ((self.id, parent), [member.as_tuple() for member in self.results])

    def save(self, backend: Backend | None = None) -> GroupResult:
        """Store the group's member ids (celery-taskset-meta-<id>) so restore() finds them."""
        (backend or self.backend).save_group(self.id, self.as_tuple())
        return self

    def delete(self, backend: Backend | None = None) -> None:
        """Remove the stored group."""
        (backend or self.backend).delete_group(self.id)

    @classmethod
    def restore(
        cls,
        id: str,  # noqa: A002 - Celery's name
        *,
        app: App | None = None,
        backend: Backend | None = None,
    ) -> GroupResult | None:
        """Return the group saved under `id`, or None if none was saved."""
        if app is None:
            if backend is None:
                raise TQError("GroupResult.restore needs the app: restore(id, app=app)")
            app = backend.app
        stored = (backend or app.backend).restore_group(id)
        if stored is None:
            return None
        restored = result_from_tuple(stored, app)
        return restored if isinstance(restored, GroupResult) else None


def result_from_tuple(value: Any, app: App) -> Any:
    """Rebuild an AsyncResult or GroupResult from its as_tuple() form."""
    if isinstance(value, (AsyncResult, ResultSet)):
        return value
    head, members = value
    task_id, parent = head if isinstance(head, (list, tuple)) else (head, None)
    parent_result = result_from_tuple(parent, app) if parent else None
    if members is not None:
        return GroupResult(
            task_id,
            [result_from_tuple(member, app) for member in members],
            app=app,
            parent=parent_result,
        )
    return AsyncResult(task_id, app=app, parent=parent_result)
