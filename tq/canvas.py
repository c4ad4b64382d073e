"""Signatures: a task call that can be passed around, partially applied and sent later."""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING, Any

from .errors import TQError
from .protocol import saferepr

if TYPE_CHECKING:
    from .app import App
    from .result import AsyncResult


class Signature(dict):  # type: ignore[type-arg]
    """A task call in Celery's dict form: task, args, kwargs, options, subtask_type, immutable."""

    def __init__(
        self,
        task: str | dict[str, Any],
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        *,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: App | None = None,
        **extra_options: Any,
    ) -> None:
        if isinstance(task, dict):
            source = task
            task = source["task"]
            args = source.get("args")
            kwargs = source.get("kwargs")
            options = source.get("options")
            subtask_type = source.get("subtask_type")
            immutable = bool(source.get("immutable"))
        options = dict(options or {}, **extra_options)
        immutable = bool(options.pop("immutable", immutable))
        super().__init__(
            task=getattr(task, "name", task),
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=options,
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self._app = app or getattr(task, "app", None)

    @classmethod
    def from_dict(cls, value: dict[str, Any], app: App | None = None) -> Signature:
        """Rebuild a signature from its dict form (as found in a message)."""
        return cls(value, app=app)

    # -- fields ------------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self["task"]

    @property
    def name(self) -> str:
        return self["task"]

    @property
    def args(self) -> tuple[Any, ...]:
        return self["args"]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]

    @property
    def immutable(self) -> bool:
        return self["immutable"]

    @property
    def app(self) -> App:
        if self._app is None:
            raise TQError(
                f"signature {self!r} is not bound to an app: build it with app.signature(...) "
                "or task.s(...)"
            )
        return self._app

    def bind(self, app: App) -> Signature:
        """Bind this signature to an app and return it."""
        self._app = app
        return self

    def __repr__(self) -> str:
        parts = [saferepr(arg) for arg in self.args]
        parts += [f"{key}={saferepr(value)}" for key, value in self.kwargs.items()]
        return f"{self.task}({', '.join(parts)})"

    # -- merging -----------------------------------------------------------------------------

    def _merge(
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        options = {k: v for k, v in (options or {}).items() if v is not None}
        merged_options = dict(self.options, **options)
        for keep in ("group_id",):
            if self.options.get(keep) is not None:
                merged_options[keep] = self.options[keep]
        if self.immutable:
            return self.args, dict(self.kwargs), merged_options
        return tuple(args or ()) + self.args, dict(self.kwargs, **(kwargs or {})), merged_options

    def clone(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Signature:
        """Return a copy with new args prepended, kwargs and options merged."""
        merged_args, merged_kwargs, merged_options = self._merge(args, kwargs, options)
        copy = Signature(
            self.task,
            merged_args,
            merged_kwargs,
            deepcopy(merged_options),
            subtask_type=self["subtask_type"],
            immutable=self.immutable,
            app=self._app,
        )
        return copy

    partial = clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Update execution options in place and return the signature."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def link(self, callback: Signature) -> Signature:
        """Add a callback to run with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Add an errback to run when this task fails."""
        self.options.setdefault("link_error", []).append(errback)
        return errback

    on_error = link_error

    # -- calling -----------------------------------------------------------------------------

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send the call through the broker, merging these arguments and options."""
        merged_args, merged_kwargs, merged_options = self._merge(args, kwargs, options)
        task = self.app.tasks.get(self.task)
        if task is not None:
            return task.apply_async(merged_args, merged_kwargs, **merged_options)
        return self.app.send_task(self.task, merged_args, merged_kwargs, **merged_options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the call with these extra arguments."""
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, in this process."""
        merged_args, merged_kwargs, _ = self._merge(args, kwargs)
        return self.app.tasks[self.task](*merged_args, **merged_kwargs)

    def freeze(self, task_id: str | None = None) -> str:
        """Give this signature its task id now, so its result can be known before sending."""
        from uuid import uuid4

        self.options.setdefault("task_id", task_id or str(uuid4()))
        return self.options["task_id"]


def signature(
    task: Any, args: Any = None, kwargs: Any = None, *, app: App | None = None, **options: Any
) -> Signature:
    """Return a Signature for a task (object, name or dict form)."""
    if isinstance(task, dict) and not options and args is None and kwargs is None:
        return Signature.from_dict(task, app=app)
    return Signature(task, args, kwargs, options, app=app)


def as_message_signatures(value: Any) -> list[dict[str, Any]] | None:
    """Turn link/link_error options (a signature or a list) into message dicts."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(item) for item in items] or None
