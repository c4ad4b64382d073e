"""chain: tasks run one after another, each given the previous one's result.

On the wire only the first step is sent; the rest travels in its message as `embed.chain`,
reversed, so that a worker pops the next step off the end (celery-wire §1.5). Every step is
frozen first, so the client holds the last step's result and can walk back through `parent`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .canvas import (
    SIGNATURE_TYPES,
    Signature,
    TaskList,
    as_list,
    maybe_signature,
    root_of,
    to_plain,
)
from .errors import TQError

if TYPE_CHECKING:
    from .canvas import AnyResult

#: Options that place a chain inside a group or chord: they belong to its last step.
MEMBERSHIP_OPTIONS = ("group_id", "group_index", "chord")


class chain(TaskList):  # noqa: N801 - Celery's name
    """Signatures run in sequence; `chain(a, b)()` is `(a | b)()`."""

    task_name, kind = "celery.chain", "chain"

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.tasks) or "chain()"

    def link(self, callback: Signature) -> Signature:
        """Run `callback` with the result of the chain's last step."""
        return self.tasks[-1].link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """Run `errback` when any step fails."""
        for step in self.tasks:
            step.link_error(errback.clone())
        return errback

    on_error = link_error

    def __call__(self, *args: Any, **kwargs: Any) -> AnyResult:
        """Send the chain; args go to the first step."""
        return self.apply_async(args, kwargs)

    def __or__(self, other: Any) -> Signature:
        """`chain | x`: append x; a trailing group followed by a task becomes a chord."""
        from .canvas_group import chord, group, unroll_single

        steps = [step.clone() for step in self.tasks]
        if isinstance(other, group):
            other = unroll_single(other)
            if isinstance(other, group) and not other.tasks:
                return self
        if isinstance(other, chain):
            result: Signature = self
            for step in other.tasks:
                result = result | step.clone()
            return result
        if not isinstance(other, Signature):
            return NotImplemented
        if steps and isinstance(other, group) and isinstance(steps[-1], chord):
            steps[-1].set_body(cast(Signature, steps[-1].body | other))
        elif steps and isinstance(steps[-1], group) and not isinstance(other, group):
            steps[-1] = chord(steps[-1], other, app=self._app)
        elif steps and isinstance(steps[-1], chord) and not isinstance(other, (chord, group)):
            steps[-1].set_body(cast(Signature, steps[-1].body | other))
        else:
            steps.append(other)
        return chain(*steps, app=self._app, **self.options)

    # -- running -----------------------------------------------------------------------------

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
        """Give every step its id now; return the last step's result, parents linked."""
        steps = upgrade_groups(flatten_steps(self.tasks))
        self.kwargs["tasks"] = steps
        membership = {"group_id": group_id, "group_index": group_index, "chord": chord}
        return freeze_steps(steps, _id or self.options.get("task_id"), membership, root_id)

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AnyResult:
        """Send the first step, carrying the others; return the last step's result."""
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        options = dict(self.options, **{k: v for k, v in options.items() if v is not None})
        work = self.clone()
        following = options.pop("chain", None)
        if following:
            # A worker moving an outer chain on hands us the steps after this one.
            work.kwargs["tasks"] += [maybe_signature(step, self._app) for step in following[::-1]]
        if not work.tasks:
            raise TQError("cannot send an empty chain: give chain() at least one signature")
        partial_args = tuple(args or ()) + work.args if not work.immutable else work.args
        steps = upgrade_groups(flatten_steps(work.tasks))
        if partial_args or kwargs:
            steps[0] = steps[0].clone(partial_args, kwargs)
        for callback in as_list(options.pop("link", None)):
            steps[-1].link(maybe_signature(callback, self._app))
        for errback in as_list(options.pop("link_error", None)):
            for step in steps:
                step.link_error(maybe_signature(errback, self._app).clone())
        membership = {key: options.pop(key, None) for key in MEMBERSHIP_OPTIONS}
        task_id = options.pop("task_id", None)
        root_id = options.get("root_id")
        result = freeze_steps(steps, task_id, membership, root_id)
        # Only the first step is sent now: other options (queue, countdown...) are its own.
        first = steps[0]
        rest = [to_plain(step) for step in reversed(steps[1:])]
        first.apply_async(chain=rest or None, **options)
        return result

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run every step here, one after another; return the last step's result."""
        partial_args = tuple(args or ()) + self.args if not self.immutable else self.args
        previous: Any = None
        for step in upgrade_groups(flatten_steps(self.clone().tasks)):
            if previous is None:
                result = step.apply(partial_args, kwargs)
            else:
                result = step.apply((previous.get(),))
            root_of(result).parent = previous
            previous = result
        return previous

    def unchain(self) -> Signature:
        """Return the first step carrying the others in its `chain` option (steps frozen)."""
        steps = upgrade_groups(flatten_steps(self.tasks))
        rest = [to_plain(step) for step in reversed(steps[1:])]
        first = steps[0].clone()
        if rest:
            first.options["chain"] = rest + list(first.options.get("chain") or [])
        return first


def flatten_steps(steps: list[Signature]) -> list[Signature]:
    """Splice nested chains in; unroll one-member groups; drop empty groups that lead to more."""
    from .canvas_group import group, unroll_single

    flat: list[Signature] = []
    for step in steps:
        if isinstance(step, chain):
            flat.extend(flatten_steps(step.tasks))
        elif isinstance(step, group):
            flat.append(unroll_single(step))
        else:
            flat.append(step)
    kept = [s for s in flat if not (isinstance(s, group) and not s.tasks)]
    return kept or flat[-1:]


def upgrade_groups(steps: list[Signature]) -> list[Signature]:
    """Turn every group that something follows into a chord whose body is what follows.

    A chord whose body is a chain led by a task keeps only that task as its body, and the
    rest of the body becomes the steps after it, as Celery does: every header message
    carries the body, so it should not carry a whole chain.
    """
    from .canvas_group import chord, group

    upgraded: list[Signature] = []
    for step in reversed(steps):
        if isinstance(step, group) and upgraded:
            step = chord(step, upgraded.pop(), app=step._app)
        upgraded.append(step)
    unrolled: list[Signature] = []
    for step in reversed(upgraded):
        if isinstance(step, chord) and isinstance(step.body, chain) and step.body.tasks:
            body_steps = upgrade_groups(flatten_steps(step.body.tasks))
            if not isinstance(body_steps[0], (chord, group)):
                step.set_body(body_steps[0])
                unrolled.append(step)
                unrolled.extend(body_steps[1:])
                continue
        unrolled.append(step)
    return unrolled


def freeze_steps(
    steps: list[Signature],
    task_id: str | None,
    membership: dict[str, Any],
    root_id: str | None,
) -> AnyResult:
    """Freeze steps last to first (the last one gets `task_id` and the chain's group place)."""
    results: list[Any] = []
    for index in range(len(steps) - 1, -1, -1):
        if index == len(steps) - 1:
            results.append(steps[index].freeze(task_id, root_id=root_id, **membership))
        else:
            results.append(steps[index].freeze(root_id=root_id))
    results.reverse()
    for earlier, later in zip(results, results[1:], strict=False):
        root_of(later).parent = earlier
    return results[-1]


SIGNATURE_TYPES["chain"] = chain
