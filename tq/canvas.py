"""Signatures: a task call that can be passed around, partially applied, combined and sent later.

The workflow primitives built from signatures (chain, group, chord) live in canvas_chain.py
and canvas_group.py; this module knows them only through SIGNATURE_TYPES, which maps
Celery's `subtask_type` names to the classes that register themselves there.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Self, cast
from uuid import uuid4

from .errors import TQError
from .protocol import saferepr

if TYPE_CHECKING:
    from typing import TypeAlias

    from .app import App
    from .result import AsyncResult, GroupResult

    AnyResult: TypeAlias = AsyncResult | GroupResult

#: Signature classes by their Celery `subtask_type` (chain, group, chord), filled on import.
SIGNATURE_TYPES: dict[str, type[Signature]] = {}

#: Options a signature keeps when a call tries to change them (Celery's merge rule).
_STICKY_OPTIONS = ("group_id",)


class Signature(dict):  # type: ignore[type-arg]
    """A task call in Celery's dict form: task, args, kwargs, options, subtask_type, immutable."""

    def __init__(
        self,
        task: Any,
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
        """Rebuild a signature (or a chain, group, chord) from its dict form."""
        kind = value.get("subtask_type")
        target = SIGNATURE_TYPES.get(kind) if kind else None
        if target is not None and target is not cls:
            return target.from_dict(value, app=app)
        return Signature(value, app=app)

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
    def subtask_type(self) -> str | None:
        return self["subtask_type"]

    @property
    def id(self) -> str | None:
        """The task id given by freeze() or task_id=, if any."""
        return self.options.get("task_id")

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

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        # The bound app is shared, never copied: it holds connections and locks.
        fields = {key: deepcopy(value, memo) for key, value in self.items()}
        return Signature.from_dict(fields, app=self._app)

    def __reduce__(self) -> Any:
        return (_rebuild_signature, (to_plain(self),))

    # -- merging -----------------------------------------------------------------------------

    def _merge(
        self,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        options = {k: v for k, v in (options or {}).items() if v is not None}
        merged_options = dict(self.options, **options)
        for keep in _STICKY_OPTIONS:
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
        fields = {
            "task": self.task,
            "args": merged_args,
            "kwargs": merged_kwargs,
            "options": deepcopy(merged_options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }
        return Signature.from_dict(fields, app=self._app)

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

    def freeze(
        self,
        _id: str | None = None,
        *,
        group_id: str | None = None,
        group_index: int | None = None,
        chord: dict[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
    ) -> AnyResult:
        """Give this signature its task id (and workflow place) now; return its future result."""
        options = self.options
        task_id = options.setdefault("task_id", _id or str(uuid4()))
        if root_id:
            options["root_id"] = root_id
        if parent_id:
            options["parent_id"] = parent_id
        if "reply_to" not in options and self._app is not None:
            # rpc:// results go to the client that froze the workflow, wherever it is sent from.
            options["reply_to"] = self._app.oid
        if group_id and "group_id" not in options:
            options["group_id"] = group_id
        if chord is not None:
            options["chord"] = to_plain(chord)
        if group_index is not None:
            options["group_index"] = group_index
        return self._result(task_id)

    def _result(self, task_id: str) -> AsyncResult:
        from .result import AsyncResult

        return AsyncResult(task_id, app=self.app, task_name=self.task)

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AnyResult:
        """Send the call through the broker, merging these arguments and options."""
        merged_args, merged_kwargs, merged_options = self._merge(args, kwargs, options)
        for key in ("chain", "chord", "link", "link_error"):
            if merged_options.get(key) is not None:
                merged_options[key] = to_plain(merged_options[key])
        task = self.app.tasks.get(self.task)
        if task is not None:
            return task.apply_async(merged_args, merged_kwargs, **merged_options)
        return self.app.send_task(self.task, merged_args, merged_kwargs, **merged_options)

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run the call here and now, as task_always_eager does; return an EagerResult."""
        merged_args, merged_kwargs, merged_options = self._merge(args, kwargs, options)
        task = self.app.tasks[self.task]
        return task.apply(merged_args, merged_kwargs, task_id=merged_options.get("task_id"))

    def delay(self, *args: Any, **kwargs: Any) -> AnyResult:
        """Send the call with these extra arguments."""
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, in this process."""
        merged_args, merged_kwargs, _ = self._merge(args, kwargs)
        return self.app.tasks[self.task](*merged_args, **merged_kwargs)

    # -- composing ---------------------------------------------------------------------------

    def __or__(self, other: Any) -> Signature:
        """`a | b`: run b with a's result (see celery-wire §4 for the whole table)."""
        from .canvas_chain import chain
        from .canvas_group import group, unroll_single

        if isinstance(other, group):
            other = unroll_single(other)
            if isinstance(other, group) and not other.tasks:
                return self
        if isinstance(other, chain):
            return chain(self, *[step.clone() for step in other.tasks], app=self._app)
        if isinstance(other, Signature):
            return chain(self, other, app=self._app)
        return NotImplemented


class TaskList(Signature):
    """A signature holding other signatures in `kwargs.tasks` (the base of chain and group)."""

    #: Celery's task name and subtask_type for the subclass ("celery.chain", "chain").
    task_name = ""
    kind = ""

    def __init__(self, *tasks: Any, app: App | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])  # chain([a, b]) and group(generator) as well as (a, b)
        items = [maybe_signature(task, app=app) for task in tasks]
        app = app or next((item._app for item in items if item._app is not None), None)
        super().__init__(
            self.task_name, (), {"tasks": items}, options, subtask_type=self.kind, app=app
        )

    @classmethod
    def from_dict(cls, value: dict[str, Any], app: App | None = None) -> Signature:
        """Rebuild from the dict form."""
        tasks = (value.get("kwargs") or {}).get("tasks") or []
        built = cls(*tasks, app=app, **dict(value.get("options") or {}))
        built["args"] = tuple(value.get("args") or ())
        built["immutable"] = bool(value.get("immutable"))
        return built

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]

    def clone(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Self:
        """Return a copy whose signatures are copies too."""
        copy = super().clone(args, kwargs, **options)
        copy.kwargs["tasks"] = [task.clone() for task in copy.kwargs["tasks"]]
        return cast(Self, copy)


def _rebuild_signature(fields: dict[str, Any]) -> Signature:
    return Signature.from_dict(fields)


def signature(
    task: Any, args: Any = None, kwargs: Any = None, *, app: App | None = None, **options: Any
) -> Signature:
    """Return a Signature for a task (object, name or dict form)."""
    if isinstance(task, dict) and not options and args is None and kwargs is None:
        return Signature.from_dict(task, app=app)
    return Signature(task, args, kwargs, options, app=app)


def maybe_signature(value: Any, app: App | None = None) -> Signature:
    """Return `value` as a Signature (rebuilding the dict form), bound to `app` if unbound."""
    if isinstance(value, Signature):
        if value._app is None and app is not None:
            value._app = app
        return value
    if isinstance(value, dict):
        return Signature.from_dict(value, app=app)
    raise TypeError(f"expected a signature or its dict form, got {saferepr(value, 80)}")


def to_plain(value: Any) -> Any:
    """Return signatures (and the lists and dicts holding them) as plain dicts and lists."""
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value


def as_list(value: Any) -> list[Any]:
    """Return a link/link_error option (None, one signature or several) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def as_message_signatures(value: Any) -> list[dict[str, Any]] | None:
    """Turn link/link_error options (a signature or a list) into message dicts."""
    return [to_plain(item) for item in as_list(value)] or None


def root_of(result: Any) -> Any:
    """Return the first result of a workflow: follow `parent` until there is none."""
    seen: set[int] = set()
    while result.parent is not None:
        if id(result) in seen:
            raise TQError("a result is its own parent: the workflow's results form a loop")
        seen.add(id(result))
        result = result.parent
    return result


# Register chain, group, chord and chunks so from_dict and `|` know them.
from . import canvas_chain as _canvas_chain  # noqa: E402,F401
from . import canvas_chunks as _canvas_chunks  # noqa: E402,F401
from . import canvas_group as _canvas_group  # noqa: E402,F401
