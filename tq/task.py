"""Task: the calling API (delay, apply_async, apply, retry) and the running task's context."""

from __future__ import annotations

import random
import sys
import threading
import traceback as traceback_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import states
from .errors import MaxRetriesExceededError, Retry

if TYPE_CHECKING:
    from .app import App
    from .canvas import Signature
    from .result import AsyncResult, EagerResult

#: Options @app.task accepts, with their defaults when neither task nor config sets them.
TASK_OPTIONS: dict[str, Any] = {
    "bind": False,
    "max_retries": None,
    "default_retry_delay": None,
    "autoretry_for": (),
    "dont_autoretry_for": (),
    "retry_kwargs": {},
    "retry_backoff": False,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "acks_late": None,
    "acks_on_failure_or_timeout": None,
    "reject_on_worker_lost": None,
    "track_started": None,
    "ignore_result": None,
    "time_limit": None,
    "soft_time_limit": None,
    "rate_limit": None,
    "queue": None,
    "exchange": None,
    "routing_key": None,
    "priority": None,
    "expires": None,
    "serializer": None,
    "typing": True,
    "throws": (),
    "shadow": None,
}


#: Task options that are also apply_async options: the task's value unless the call gives one.
_CALL_DEFAULTS = (
    "queue", "exchange", "routing_key", "priority", "expires", "shadow", "time_limit",
    "soft_time_limit",
)  # fmt: skip


@dataclass
class Context:
    """What a running task knows about its own call (`self.request`)."""

    id: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    is_eager: bool = False
    called_directly: bool = True
    hostname: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    eta: str | None = None
    expires: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    headers: dict[str, Any] = field(default_factory=dict)
    ignore_result: bool = False
    origin: str | None = None
    in_worker: bool = False


class _ContextStack(threading.local):
    def __init__(self) -> None:
        self.stack: list[Context] = []


_contexts = _ContextStack()


def current_request() -> Context | None:
    """Return the context of the task running in this thread, if any."""
    return _contexts.stack[-1] if _contexts.stack else None


class running:
    """Push a task context for the duration of a `with` block."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def __enter__(self) -> Context:
        _contexts.stack.append(self.context)
        return self.context

    def __exit__(self, *exc_info: object) -> None:
        _contexts.stack.pop()


def exponential_backoff(factor: float, retries: int, maximum: float, jitter: bool) -> float:
    """Return the countdown before retry number `retries + 1`: factor * 2**retries, capped."""
    countdown = min(maximum, factor * (2**retries))
    if jitter:
        countdown = random.randrange(int(countdown) + 1)
    return max(0.0, float(countdown))


def positional_range(signature: Any) -> tuple[int, int | None] | None:
    """How many positional arguments a call without keywords may pass: (least, most or None).

    None when a call without keywords never fits (a keyword-only parameter has no default).
    """
    if signature is None:
        return None
    least, most = 0, 0
    unbounded = False
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind == parameter.VAR_POSITIONAL:
            unbounded = True
        elif kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            most += 1
            if parameter.default is parameter.empty:
                least = most
        elif kind == parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            return None
    return least, None if unbounded else most


class Task:
    """A function registered with an app, callable directly or through the broker."""

    # The options of TASK_OPTIONS, set per task by __init__.
    bind: bool
    max_retries: int | None
    default_retry_delay: float | None
    autoretry_for: tuple[type[BaseException], ...]
    dont_autoretry_for: tuple[type[BaseException], ...]
    retry_kwargs: dict[str, Any]
    retry_backoff: bool | float
    retry_backoff_max: float
    retry_jitter: bool
    acks_late: bool | None
    acks_on_failure_or_timeout: bool | None
    reject_on_worker_lost: bool | None
    track_started: bool | None
    ignore_result: bool | None
    time_limit: float | None
    soft_time_limit: float | None
    rate_limit: str | None
    queue: str | None
    exchange: str | None
    routing_key: str | None
    priority: int | None
    expires: float | None
    serializer: str | None
    typing: bool
    throws: tuple[type[BaseException], ...]
    shadow: str | None

    def __init__(self, app: App, fun: Callable[..., Any], name: str, **options: Any) -> None:
        unknown = set(options) - set(TASK_OPTIONS)
        if unknown:
            raise TypeError(f"@app.task got unknown option(s): {', '.join(sorted(unknown))}")
        self.app = app
        self.name = name
        self.run = fun
        self.__wrapped__ = fun
        self.__doc__ = fun.__doc__
        self.__name__ = getattr(fun, "__name__", name)
        self.__module__ = getattr(fun, "__module__", __name__)
        for key, default in TASK_OPTIONS.items():
            setattr(self, key, options.get(key, default))
        if isinstance(self.autoretry_for, type):
            self.autoretry_for = (self.autoretry_for,)

    def __repr__(self) -> str:
        return f"<@task: {self.name} of {self.app.main}>"

    # -- settings that fall back to the app's configuration --------------------------------

    def option(self, name: str, setting: str) -> Any:
        """Return the task's own option, or the app setting when it has none."""
        value = getattr(self, name)
        return self.app.conf[setting] if value is None else value

    @property
    def request(self) -> Context:
        """The context of the current call of this task (empty outside a call)."""
        return current_request() or Context()

    # -- calling ---------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with running(Context(args=list(args), kwargs=dict(kwargs), called_directly=True)):
            return self._invoke(args, kwargs)

    def _invoke(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> Any:
        if self.bind:
            return self.run(self, *args, **kwargs)
        return self.run(*args, **kwargs)

    def call_with_autoretry(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run the task body, turning `autoretry_for` exceptions into retries."""
        if not self.autoretry_for:
            return self._invoke(args, kwargs)
        try:
            return self._invoke(args, kwargs)
        except Retry:
            raise
        except self.autoretry_for as exc:
            if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
                raise
            retry_kwargs = dict(self.retry_kwargs or {})
            if self.retry_backoff and "countdown" not in retry_kwargs:
                factor = 1 if self.retry_backoff is True else self.retry_backoff
                retry_kwargs["countdown"] = exponential_backoff(
                    factor, self.request.retries, self.retry_backoff_max, self.retry_jitter
                )
            raise self.retry(exc=exc, **retry_kwargs) from exc

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task with these arguments; a shortcut for apply_async."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task to a worker through the broker and return its result handle."""
        if self.typing:
            self._check_arguments(args or (), kwargs or {})
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, task_id=options.get("task_id"))
        for key in _CALL_DEFAULTS:
            value = getattr(self, key)
            if value is not None and options.get(key) is None:
                options[key] = value
        if options.get("ignore_result") is None:
            options["ignore_result"] = self.option("ignore_result", "task_ignore_result")
        return self.app.send_task(self.name, args, kwargs, task=self, **options)

    def _signature(self) -> Any:
        # inspect.signature costs tens of microseconds: once per task, not once per call.
        cached = self.__dict__.get("_run_signature", False)
        if cached is False:
            import inspect

            try:
                cached = inspect.signature(self.run)
            except (TypeError, ValueError):
                cached = None
            self.__dict__["_run_signature"] = cached
            self.__dict__["_positional_range"] = positional_range(cached)
        return cached

    def _check_arguments(self, args: Any, kwargs: Any) -> None:
        # With typing on (the default, as in Celery) a call that does not fit the
        # function's signature fails at the client instead of in a worker.
        signature = self._signature()
        if signature is None:
            return
        accepted = self.__dict__["_positional_range"]
        if accepted is not None and not kwargs:
            # Positional arguments only: a count check says what bind() would (bind takes µs).
            count = len(args) + (1 if self.bind else 0)
            if accepted[0] <= count and (accepted[1] is None or count <= accepted[1]):
                return
        try:
            if self.bind:
                signature.bind(self, *args, **kwargs)
            else:
                signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None

    def apply(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        retries: int = 0,
        throw: bool | None = None,
        **_options: Any,
    ) -> EagerResult:
        """Run the task here and now, returning an EagerResult."""
        from uuid import uuid4

        from .result import EagerResult

        task_id = task_id or str(uuid4())
        args, kwargs = list(args or ()), dict(kwargs or {})
        throw = self.app.conf.task_eager_propagates if throw is None else throw
        context = Context(
            id=task_id,
            args=args,
            kwargs=kwargs,
            retries=retries,
            is_eager=True,
            called_directly=False,
            root_id=task_id,
        )
        with running(context):
            try:
                value = self.call_with_autoretry(args, kwargs)
            except Retry as retry:
                if isinstance(retry.eager_result, EagerResult):
                    return retry.eager_result
                value, state = retry.exc, states.RETRY
                return EagerResult(task_id, value, state, traceback=None, name=self.name)
            except Exception as exc:
                if throw:
                    raise
                trace = "".join(traceback_module.format_exception(*sys.exc_info()))
                return EagerResult(task_id, exc, states.FAILURE, traceback=trace, name=self.name)
        return EagerResult(task_id, value, states.SUCCESS, name=self.name)

    def retry(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Re-send this task (same id, retries + 1) after a delay, then raise Retry."""
        request = self.request
        if request.called_directly:
            # Called outside a worker: nothing to re-send; surface the cause.
            raise exc if exc is not None else Retry("task can be retried only from a worker")
        limit = (
            self.option("max_retries", "task_max_retries") if max_retries is None else max_retries
        )
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} kwargs:{request.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.option("default_retry_delay", "task_default_retry_delay")
        retry_error = Retry(exc=exc, when=countdown)
        if request.is_eager:
            retry_error.eager_result = self.apply(
                args if args is not None else request.args,
                kwargs if kwargs is not None else request.kwargs,
                task_id=request.id,
                retries=request.retries + 1,
            )
        else:
            self.app.send_task(
                self.name,
                args if args is not None else request.args,
                kwargs if kwargs is not None else request.kwargs,
                task_id=request.id,
                retries=request.retries + 1,
                countdown=countdown,
                eta=eta,
                root_id=request.root_id,
                parent_id=request.parent_id,
                group_id=request.group,
                group_index=request.group_index,
                callbacks=request.callbacks,
                errbacks=request.errbacks,
                chain=request.chain,
                chord=request.chord,
                reply_to=request.reply_to,
                ignore_result=request.ignore_result,
                queue=options.pop("queue", None) or request.delivery_info.get("routing_key"),
                time_limit=request.timelimit[0],
                soft_time_limit=request.timelimit[1],
                task=self,
                **options,
            )
        if throw:
            raise retry_error
        return retry_error

    # -- signatures and results ------------------------------------------------------------

    def signature(self, args: Any = None, kwargs: Any = None, **options: Any) -> Signature:
        """Return a signature of a call of this task."""
        from .canvas import Signature

        return Signature(self.name, args, kwargs, options, app=self.app)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """Return a signature with these arguments."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """Return an immutable signature: results of other tasks are not passed to it."""
        return self.signature(args, kwargs, immutable=True)

    def chunks(self, it: Iterable[Any], n: int) -> Signature:
        """Return chunks: this task called with each argument tuple of `it`, `n` per message."""
        from .canvas_chunks import chunks

        return chunks(self.s(), it, n, app=self.app)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """Return the result handle of a task id."""
        return self.app.AsyncResult(task_id, task_name=self.name)
