"""group and chord: tasks run in parallel, and a body that runs once they have all finished.

A group sends each member as its own message with `group=<gid>` and `group_index=i`. A chord
sends its header as a group whose members also carry the body in `embed.chord`; the worker
that stores the last header result sends the body with the list of header results
(celery-wire §1.5). The result backend counts the finished members (see backends/).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from .canvas import (
    SIGNATURE_TYPES,
    Signature,
    TaskList,
    as_list,
    maybe_signature,
    root_of,
    to_plain,
)

if TYPE_CHECKING:
    from .app import App
    from .canvas import AnyResult


def unroll_single(value: Signature) -> Signature:
    """Return the only member of a one-member group (Celery treats it as that task)."""
    if isinstance(value, group) and len(value.tasks) == 1:
        return value.tasks[0]
    return value


class group(TaskList):  # noqa: N801 - Celery's name
    """Signatures run in parallel; the result is a GroupResult of their results, in order."""

    task_name, kind = "celery.group", "group"

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(member) for member in self.tasks)}])"

    def __len__(self) -> int:
        return len(self.tasks)

    def members(self) -> Iterator[Signature]:
        """Yield the members, nested groups flattened into this one."""
        for member in self.tasks:
            if isinstance(member, group):
                yield from member.members()
            else:
                yield member

    def link(self, callback: Signature) -> Signature:
        raise TypeError("cannot link a callback to a group: use a chord")

    def link_error(self, errback: Signature) -> Signature:
        """Run `errback` when any member fails."""
        for member in self.tasks:
            member.link_error(errback.clone())
        return errback

    on_error = link_error

    def __call__(self, *partial_args: Any, **options: Any) -> AnyResult:
        """Send every member; args are prepended to each member's args."""
        return self.apply_async(partial_args, **options)

    def __or__(self, other: Any) -> Signature:
        """`group | x` is a chord with body x (an empty group on the right is dropped)."""
        if isinstance(other, group) and not other.tasks:
            return self
        if not isinstance(other, Signature):
            return NotImplemented
        return chord(self, other, app=self._app)

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
        """Give the group and each member its id now; return the GroupResult."""
        from .result import GroupResult

        group_id = self.options.setdefault("task_id", _id or str(uuid4()))
        flat = list(self.members())
        self.kwargs["tasks"] = flat
        results = [
            member.freeze(group_index=index, root_id=root_id, parent_id=parent_id)
            for index, member in enumerate(flat)
        ]
        return GroupResult(group_id, results, app=self.app)

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AnyResult:
        """Send every member with this group's id and its index; return the GroupResult."""
        from .result import GroupResult

        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        if options.get("link") is not None:
            raise TypeError("cannot link a callback to a group: use a chord")
        if options.get("link_error") is not None:
            raise TypeError("cannot link an errback to a group call: link it to each member")
        following = options.pop("chain", None)
        if following:
            # A group that a chain continues after is the header of a chord.
            from .canvas_chain import chain

            body = chain(*[maybe_signature(s, self._app) for s in following[::-1]], app=self._app)
            return chord(self, body, app=self._app).apply_async(args, kwargs, **options)
        options = dict(self.options, **{k: v for k, v in options.items() if v is not None})
        group_id = options.pop("task_id", None) or str(uuid4())
        body = options.pop("chord", None)
        for ignored in ("group_id", "group_index", "immutable"):
            options.pop(ignored, None)
        partial_args = tuple(args or ()) + self.args if not self.immutable else self.args
        members = [member.clone() for member in self.members()]
        if body is not None:
            backend = self.app.backend
            backend.ensure_chords_allowed()
            backend.set_chord_size(group_id, sum(chord_size(member) for member in members))
        # One batch: the members are encoded first, then sent with as few round trips as the
        # broker allows (and none is sent if one cannot be).
        with self.app.publisher.batch():
            results = [
                member.apply_async(
                    partial_args,
                    kwargs,
                    group_id=group_id,
                    group_index=index,
                    chord=body,
                    **options,
                )
                for index, member in enumerate(members)
            ]
        return GroupResult(group_id, results, app=self.app)

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run every member here, in order; return their GroupResult."""
        from .result import GroupResult

        partial_args = tuple(args or ()) + self.args if not self.immutable else self.args
        results = [member.clone().apply(partial_args, kwargs) for member in self.members()]
        group_id = options.get("task_id") or self.options.get("task_id") or str(uuid4())
        return GroupResult(group_id, results, app=self.app)


class chord(Signature):  # noqa: N801 - Celery's name
    """A header group, and a body sent with the list of the header's results."""

    def __init__(
        self,
        header: Any,
        body: Any = None,
        *,
        app: App | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        header_group = header if isinstance(header, group) else _as_group(header, app)
        app = app or header_group._app or getattr(body, "_app", None)
        if header_group._app is None:
            header_group._app = app
        fields = {
            "header": header_group,
            "body": maybe_signature(body, app=app) if body is not None else None,
            "kwargs": dict(kwargs or {}),
        }
        super().__init__("celery.chord", (), fields, options, subtask_type="chord", app=app)

    @classmethod
    def from_dict(cls, value: dict[str, Any], app: App | None = None) -> chord:
        """Rebuild a chord from its dict form."""
        fields = value.get("kwargs") or {}
        built = cls(
            fields.get("header") or [],
            fields.get("body"),
            app=app,
            kwargs=fields.get("kwargs"),
            **dict(value.get("options") or {}),
        )
        built["args"] = tuple(value.get("args") or ())
        built["immutable"] = bool(value.get("immutable"))
        return built

    @property
    def header(self) -> group:
        return self.kwargs["header"]

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    @property
    def body(self) -> Signature:
        return self.kwargs["body"]

    def set_body(self, body: Signature) -> None:
        """Replace the body (the chord's id stays that of its header)."""
        self.kwargs["body"] = body

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def clone(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> chord:
        """Return a copy whose header and body are copies too."""
        copy = super().clone(args, kwargs, **options)
        assert isinstance(copy, chord)
        copy.kwargs["header"] = self.header.clone()
        copy.kwargs["body"] = self.body.clone() if self.body is not None else None
        return copy

    def link(self, callback: Signature) -> Signature:
        """Run `callback` with the body's result."""
        return self.body.link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """Run `errback` when the body fails (a header failure fails the body)."""
        return self.body.link_error(errback)

    on_error = link_error

    def __call__(self, body: Signature | None = None, **options: Any) -> AnyResult:
        """Send the chord (with this body, if given: `chord(header)(body)`)."""
        return self.apply_async((), {"body": body} if body is not None else None, **options)

    def __or__(self, other: Any) -> Signature:
        """`chord | task` appends the task to the body; anything else makes a chain."""
        if isinstance(other, group):
            other = unroll_single(other)
        if isinstance(other, Signature) and not isinstance(other, group):
            from .canvas_chain import chain

            if not isinstance(other, chain):
                copy = self.clone()
                copy.set_body(copy.body | other)
                return copy
        return Signature.__or__(self, other)

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
        """Give header and body their ids now; return the body's result (parent: the header)."""
        header_result = self.header.freeze(root_id=root_id, parent_id=parent_id)
        body_result = self.body.freeze(
            _id or self.options.get("task_id"),
            group_id=group_id or self.header.options["task_id"],
            group_index=group_index,
            chord=chord,
            root_id=root_id,
        )
        root_of(body_result).parent = header_result
        return body_result

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AnyResult:
        """Send the header with the body attached; return the body's result."""
        from .canvas_chain import MEMBERSHIP_OPTIONS, chain

        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        kwargs = dict(kwargs or {})
        work = self.clone()
        body = maybe_signature(kwargs.pop("body", None) or work.body, self._app).clone()
        kwargs = dict(work.kwargs.get("kwargs") or {}, **kwargs)
        options = dict(self.options, **{k: v for k, v in options.items() if v is not None})
        header = work.header
        group_id = header.options.setdefault("task_id", str(uuid4()))
        body_id = options.pop("task_id", None)
        header_options = {key: options.pop(key) for key in ("countdown", "eta") if key in options}
        parent_id = options.pop("parent_id", None)
        for callback in as_list(options.pop("link", None)):
            body.link(maybe_signature(callback, self._app))
        for errback in as_list(options.pop("link_error", None)):
            body.link_error(maybe_signature(errback, self._app))
        following = options.pop("chain", None)
        if following:
            # A chain that continues after this chord continues after its body.
            body = chain(body, *[maybe_signature(s, self._app) for s in following[::-1]])
        membership = {key: options.pop(key, None) for key in MEMBERSHIP_OPTIONS}
        options.pop("immutable", None)
        body.options.update({k: v for k, v in options.items() if k != "root_id"})
        body_result = body.freeze(
            body_id,
            group_id=membership["group_id"] or group_id,
            group_index=membership["group_index"],
            chord=membership["chord"],
            root_id=options.get("root_id"),
        )
        # Every header message carries the body: a chain body travels as its first step
        # holding the rest, so the header messages do not repeat a nested chain tree.
        sent_body = body.unchain() if isinstance(body, chain) else body
        partial_args = tuple(args or ()) + work.args if not work.immutable else work.args
        if header.tasks:
            header_result = header.apply_async(
                partial_args,
                kwargs,
                task_id=group_id,
                chord=to_plain(sent_body),
                parent_id=parent_id,
                **header_options,
                **options,
            )
        else:
            header_result = header.freeze()
            sent_body.apply_async(([],), parent_id=parent_id)
        root_of(body_result).parent = header_result
        return body_result

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run the header here, then the body with its values; return the body's result."""
        kwargs = dict(kwargs or {})
        body = maybe_signature(kwargs.pop("body", None) or self.body, self._app)
        partial_args = tuple(args or ()) + self.args if not self.immutable else self.args
        header_result = self.header.apply(partial_args, kwargs)
        body_result = body.clone().apply((header_result.get(),))
        root_of(body_result).parent = header_result
        return body_result


def _as_group(tasks: Any, app: App | None) -> group:
    if isinstance(tasks, dict):
        built = maybe_signature(tasks, app=app)
        return built if isinstance(built, group) else group(built, app=app)
    return group(list(tasks), app=app)


def chord_size(member: Signature) -> int:
    """Return how many header parts a chord member reports (Celery's `_descend`)."""
    from .canvas_chain import chain

    if isinstance(member, group):
        return sum(chord_size(inner) for inner in member.tasks)
    if isinstance(member, chain):
        for step in reversed(member.tasks):
            size = chord_size(step)
            if size:
                return size
        return 0
    if isinstance(member, chord):
        return chord_size(member.body)
    return 1


SIGNATURE_TYPES["group"] = group
SIGNATURE_TYPES["chord"] = chord
