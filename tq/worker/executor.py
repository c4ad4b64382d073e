"""Run ONE task request and report how it ended: the heart of a pool process."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import traceback as traceback_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import states
from ..canvas import Signature
from ..errors import BackendError, Ignore, Reject, Retry
from ..protocol import TaskRequest, saferepr
from ..task import Context, Task, running

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("tq.worker")

#: A result write that fails is retried this many times before the result is given up.
RESULT_STORE_ATTEMPTS = 5
RESULT_STORE_BACKOFF_S = 0.2


@dataclass(frozen=True)
class Outcome:
    """How one execution ended, as the parent needs to know it."""

    state: str
    runtime_s: float
    result_repr: str | None = None
    exception_repr: str | None = None
    traceback: str | None = None
    requeue: bool = False
    retry_when: float | None = None


def context_for(request: TaskRequest, hostname: str) -> Context:
    """Return the `self.request` a task sees while it runs in a worker."""
    return Context(
        id=request.id,
        args=request.args,
        kwargs=request.kwargs,
        retries=request.retries,
        is_eager=False,
        called_directly=False,
        hostname=hostname,
        root_id=request.root_id,
        parent_id=request.parent_id,
        group=request.group_id,
        group_index=request.group_index,
        eta=request.eta.isoformat() if request.eta else None,
        expires=request.expires.isoformat() if request.expires else None,
        delivery_info=request.delivery_info,
        reply_to=request.reply_to,
        correlation_id=request.correlation_id,
        callbacks=request.callbacks,
        errbacks=request.errbacks,
        chain=request.chain,
        chord=request.chord,
        timelimit=(request.time_limit, request.soft_time_limit),
        headers=request.headers,
        ignore_result=request.ignore_result,
        origin=request.origin,
        in_worker=True,
    )


def store(
    app: App, request: TaskRequest, result: Any, state: str, traceback: str | None, hostname: str
) -> None:
    """Store a state, retrying a failing backend a few times before giving up with a log line."""
    for attempt in range(1, RESULT_STORE_ATTEMPTS + 1):
        try:
            app.backend.store_result(request.id, result, state, traceback, request, worker=hostname)
            return
        except BackendError as exc:
            if attempt == RESULT_STORE_ATTEMPTS:
                logger.error(
                    "Task %s[%s]: result of state %s lost: %s", request.name, request.id, state, exc
                )
                return
            time.sleep(RESULT_STORE_BACKOFF_S * attempt)


def _wants_result(task: Task, request: TaskRequest) -> bool:
    return not (request.ignore_result or task.option("ignore_result", "task_ignore_result"))


def execute(app: App, request: TaskRequest, hostname: str) -> Outcome:
    """Run the task of a request here, store its states, send its callbacks; never raise."""
    task = app.tasks[request.name]
    wants_result = _wants_result(task, request)
    started = time.monotonic()
    if wants_result and task.option("track_started", "task_track_started"):
        store(
            app, request, {"pid": os.getpid(), "hostname": hostname}, states.STARTED, None, hostname
        )
    with running(context_for(request, hostname)):
        try:
            value = task.call_with_autoretry(request.args, request.kwargs)
        except Retry as retry:
            runtime = time.monotonic() - started
            trace = _format_traceback()
            cause = retry.exc if retry.exc is not None else retry
            if wants_result:
                store(app, request, cause, states.RETRY, trace, hostname)
            return Outcome(
                states.RETRY,
                runtime,
                exception_repr=saferepr(cause),
                traceback=trace,
                retry_when=retry.when,
            )
        except Reject as reject:
            return Outcome(
                states.REJECTED,
                time.monotonic() - started,
                exception_repr=saferepr(reject.reason),
                requeue=reject.requeue,
            )
        except Ignore:
            return Outcome(states.IGNORED, time.monotonic() - started)
        except Exception as exc:
            runtime = time.monotonic() - started
            trace = _format_traceback()
            if wants_result or not request.ignore_result:
                store(app, request, exc, states.FAILURE, trace, hostname)
            _call_errbacks(app, request, exc, trace)
            return Outcome(states.FAILURE, runtime, exception_repr=saferepr(exc), traceback=trace)
        runtime = time.monotonic() - started
        if wants_result:
            store(app, request, value, states.SUCCESS, None, hostname)
        try:
            _call_callbacks(app, request, value)
        except Exception as exc:  # a callback that cannot be sent must not hide the success
            logger.error("Task %s[%s]: callbacks not sent: %r", request.name, request.id, exc)
        return Outcome(states.SUCCESS, runtime, result_repr=saferepr(value))


def _format_traceback() -> str:
    return "".join(traceback_module.format_exception(*sys.exc_info()))


def _call_callbacks(app: App, request: TaskRequest, value: Any) -> None:
    parent: dict[str, Any] = {"parent_id": request.id, "root_id": request.root_id or request.id}
    for callback in request.callbacks or ():
        Signature.from_dict(callback, app=app).apply_async((value,), **parent)
    if request.chain:
        remaining = list(request.chain)
        following = Signature.from_dict(remaining.pop(), app=app)
        following.apply_async((value,), chain=remaining or None, **parent)


def _call_errbacks(app: App, request: TaskRequest, exc: BaseException, trace: str) -> None:
    for errback in request.errbacks or ():
        signature = Signature.from_dict(errback, app=app)
        task = app.tasks.get(signature.task)
        try:
            if task is not None and _takes_request_exc_traceback(task):
                # New-style errback (request, exc, traceback): run it here, as Celery does.
                signature(context_for(request, ""), exc, trace)
            else:
                signature.apply_async(
                    (request.id,), parent_id=request.id, root_id=request.root_id or request.id
                )
        except Exception as error:
            logger.error(
                "Task %s[%s]: errback %r failed: %r", request.name, request.id, signature, error
            )


def _takes_request_exc_traceback(task: Task) -> bool:
    try:
        parameters = list(inspect.signature(task.run).parameters.values())
    except (TypeError, ValueError):
        return False
    if task.bind:
        parameters = parameters[1:]
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 1 or any(p.kind == p.VAR_POSITIONAL for p in parameters)
