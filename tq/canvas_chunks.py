"""chunks: one task called with many argument tuples, `n` calls per message, sent as a group.

As in Celery, each message runs the built-in task `celery.starmap` with the task's signature
and its part of the tuples (`kwargs = {"task": ..., "it": [...]}`), and returns the list of the
part's results; the group's result is the list of those lists. The group is sent in bulk
(Publisher.batch): one pipeline or transaction per 500 messages where the broker allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .canvas import SIGNATURE_TYPES, Signature, maybe_signature
from .canvas_group import group

if TYPE_CHECKING:
    from .app import App
    from .canvas import AnyResult

#: The built-in task a chunks message runs (Celery's name, so either side's worker runs it).
STARMAP_TASK = "celery.starmap"


def xstarmap(task: Signature, it: Iterable[Any], *, app: App | None = None) -> Signature:
    """Return the signature of one `celery.starmap` message: task(*args) for each args in it."""
    calls = [list(args) for args in it]
    return Signature(
        STARMAP_TASK, (), {"task": task, "it": calls}, immutable=True, app=app or task._app
    )


class chunks(Signature):  # noqa: N801 - Celery's name
    """A task called with each argument tuple of `it`, sent as messages of `n` calls each."""

    def __init__(
        self, task: Any, it: Iterable[Any], n: int, *, app: App | None = None, **options: Any
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"chunks: n must be a whole number >= 1, not {n!r}")
        task_signature = maybe_signature(task, app=app)
        fields = {"task": task_signature, "it": [list(args) for args in it], "n": n}
        super().__init__(
            "celery.chunks", (), fields, options, subtask_type="chunks", immutable=True,
            app=app or task_signature._app,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, value: dict[str, Any], app: App | None = None) -> Signature:
        """Rebuild chunks from the dict form."""
        fields = value.get("kwargs") or {}
        options = dict(value.get("options") or {})
        return cls(fields["task"], fields.get("it") or [], fields["n"], app=app, **options)

    def __repr__(self) -> str:
        return (
            f"chunks({self.kwargs['task']!r}, <{len(self.kwargs['it'])} calls>, {self.kwargs['n']})"
        )

    def group(self) -> group:
        """Return the group of `celery.starmap` messages, one per `n` calls."""
        task, calls, size = self.kwargs["task"], self.kwargs["it"], self.kwargs["n"]
        parts = [calls[start : start + size] for start in range(0, len(calls), size)]
        return group([xstarmap(task, part, app=self._app) for part in parts], app=self._app)

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AnyResult:
        """Send the group of parts; return its GroupResult (a list of lists when got)."""
        return self.group().apply_async(**dict(self.options, **options))

    def __call__(self, **options: Any) -> AnyResult:
        """Send the chunks: `add.chunks(pairs, 10)()`."""
        return self.apply_async(**options)


def register_builtins(app: App) -> None:
    """Register `celery.starmap`, which a chunks message runs, on the app."""

    def starmap(task: dict[str, Any], it: list[list[Any]]) -> list[Any]:
        handler = app.task_by_name(maybe_signature(task, app=app).task)
        return [handler(*args) for args in it]

    app.task(name=STARMAP_TASK)(starmap)


SIGNATURE_TYPES["chunks"] = chunks
