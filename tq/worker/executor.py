"""Run ONE task request and report how it ended: the heart of a pool process.

It also moves the request's workflow on: link callbacks and the next chain step on success,
the chord's part count on any final state, and, on failure or revocation, everything that
now never runs (the rest of the chain, a chord body, errbacks) is marked failed with the
same exception, as Celery's backends do, so that no client waits forever.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import traceback as traceback_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kombu.exceptions import EncodeError

from .. import states
from ..canvas import Signature, maybe_signature, to_plain
from ..canvas_chain import chain
from ..canvas_group import chord, group
from ..errors import ChordError, Ignore, Reject, Retry, TQError
from ..protocol import TaskRequest, saferepr
from ..task import Context, Task, running

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("tq.worker")

#: A result write that fails is retried this many times, within RESULT_STORE_RETRY_S in all,
#: before the result is given up. Backends wait out an unreachable server themselves
#: (backends.base.UNAVAILABLE_RETRY_S): the time bound keeps that from being multiplied.
RESULT_STORE_ATTEMPTS = 5
RESULT_STORE_RETRY_S = 30.0
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
    app: App,
    request: TaskRequest,
    result: Any,
    state: str,
    traceback: str | None,
    hostname: str,
    *,
    write: bool = True,
    errbacks: bool | None = None,
) -> None:
    """Store a state; a failed or revoked task also fails the workflow that waits on it."""
    if write:
        _write_state(app, request, result, state, traceback, hostname)
    if state in states.PROPAGATE_STATES:
        call_errbacks = state == states.FAILURE if errbacks is None else errbacks
        _propagate_failure(app, request, result, state, traceback, hostname, call_errbacks)


def _write_state(
    app: App, request: TaskRequest, result: Any, state: str, traceback: str | None, hostname: str
) -> None:
    """Store a state, retrying a failing backend a few times before giving up with a log line."""
    deadline = time.monotonic() + RESULT_STORE_RETRY_S
    for attempt in range(1, RESULT_STORE_ATTEMPTS + 1):
        try:
            app.backend.store_result(request.id, result, state, traceback, request, worker=hostname)
            return
        except EncodeError as exc:
            # The value (or, with result_extended, the arguments) cannot be serialised: say so
            # as the task's FAILURE instead of losing the pool process, as Celery does.
            logger.error(
                "Task %s[%s]: its %s state cannot be serialised: %s",
                request.name,
                request.id,
                state,
                exc,
            )
            if state != states.FAILURE:
                try:
                    app.backend.store_result(
                        request.id,
                        EncodeError(str(exc)),
                        states.FAILURE,
                        traceback,
                        None,
                        worker=hostname,
                    )
                except Exception as again:
                    logger.error("Task %s[%s]: result lost: %r", request.name, request.id, again)
            return
        except TQError as exc:  # BackendError, DataDirError: the store may come back
            pause_s = RESULT_STORE_BACKOFF_S * attempt
            if attempt == RESULT_STORE_ATTEMPTS or time.monotonic() + pause_s > deadline:
                logger.error(
                    "Task %s[%s]: result of state %s lost: %s", request.name, request.id, state, exc
                )
                return
            time.sleep(pause_s)
        except Exception as exc:  # never lose the pool process over a result write
            logger.error(
                "Task %s[%s]: result of state %s lost: %r", request.name, request.id, state, exc
            )
            return


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
            write = wants_result or not request.ignore_result
            store(app, request, exc, states.FAILURE, trace, hostname, write=write)
            return Outcome(states.FAILURE, runtime, exception_repr=saferepr(exc), traceback=trace)
        runtime = time.monotonic() - started
        if wants_result:
            store(app, request, value, states.SUCCESS, None, hostname)
        _call_callbacks(app, request, value, hostname)
        if request.chord:
            finish_chord_part(app, request, states.SUCCESS, value, hostname)
        return Outcome(states.SUCCESS, runtime, result_repr=saferepr(value))


def _format_traceback() -> str:
    return "".join(traceback_module.format_exception(*sys.exc_info()))


def _call_callbacks(app: App, request: TaskRequest, value: Any, hostname: str) -> None:
    parent: dict[str, Any] = {"parent_id": request.id, "root_id": request.root_id or request.id}
    for callback in request.callbacks or ():
        try:
            maybe_signature(callback, app=app).apply_async((value,), **parent)
        except Exception as exc:  # a callback that cannot be sent must not hide the success
            logger.error("Task %s[%s]: callback not sent: %r", request.name, request.id, exc)
    if request.chain:
        remaining = list(request.chain)
        following = maybe_signature(remaining.pop(), app=app)
        try:
            following.apply_async((value,), chain=remaining or None, **parent)
        except Exception as exc:
            # The next step cannot be sent (bad arguments, no broker): fail the rest of the
            # chain with the reason, so whoever waits on its last result hears of it.
            logger.error("Task %s[%s]: next chain step not sent: %r", request.name, request.id, exc)
            for step in [*(maybe_signature(s, app=app) for s in remaining), following]:
                _fail_unrun(app, step, exc, states.FAILURE, None, hostname, errbacks=False)


def finish_chord_part(
    app: App, request: TaskRequest, state: str, result: Any, hostname: str
) -> None:
    """Count this header task in its chord; the one that completes it sends (or fails) the body."""
    try:
        ready = app.backend.on_chord_part_return(request, state, result)
    except Exception as exc:
        logger.error("Task %s[%s]: chord part not counted: %r", request.name, request.id, exc)
        return
    if ready is None:
        return
    body = maybe_signature(request.chord, app=app)
    if ready.error is not None:
        logger.error("Chord %s failed: %s", request.group_id, ready.error)
        _fail_unrun(app, body, ready.error, states.FAILURE, None, hostname, errbacks=True)
        return
    try:
        body.apply_async((ready.values,))
    except Exception as exc:
        logger.error("Chord %s: body %r not sent: %r", request.group_id, body, exc)
        error = ChordError(f"Callback error: {exc!r}")
        _fail_unrun(app, body, error, states.FAILURE, None, hostname, errbacks=True)


def _propagate_failure(
    app: App,
    request: TaskRequest,
    exc: Any,
    state: str,
    traceback: str | None,
    hostname: str,
    call_errbacks: bool,
) -> None:
    if request.chord:
        finish_chord_part(app, request, state, exc, hostname)
    for element in request.chain or ():
        step = maybe_signature(element, app=app)
        _fail_unrun(app, step, exc, state, traceback, hostname, errbacks=False)
    if call_errbacks and isinstance(exc, BaseException):
        _call_errbacks(app, request, exc, traceback or "")


def _fail_unrun(
    app: App,
    signature: Signature,
    exc: Any,
    state: str,
    traceback: str | None,
    hostname: str,
    *,
    errbacks: bool,
) -> None:
    """Mark a workflow part that will now never run as failed, and what waits on it in turn."""
    if isinstance(signature, group):
        for member in signature.tasks:
            _fail_unrun(app, member, exc, state, traceback, hostname, errbacks=errbacks)
    elif isinstance(signature, chord):
        for member in signature.header.tasks:
            _fail_unrun(app, member, exc, state, traceback, hostname, errbacks=False)
        _fail_unrun(app, signature.body, exc, state, traceback, hostname, errbacks=errbacks)
    elif isinstance(signature, chain):
        for step in signature.tasks:
            _fail_unrun(app, step, exc, state, traceback, hostname, errbacks=errbacks)
    elif signature.id is not None:
        request = request_for_signature(signature)
        store(app, request, exc, state, traceback, hostname, errbacks=errbacks)


def request_for_signature(signature: Signature) -> TaskRequest:
    """Return the request a frozen signature would have been run with (to record its fate)."""
    options = signature.options
    task_id = options["task_id"]
    return TaskRequest(
        id=task_id,
        name=signature.task,
        args=list(signature.args),
        kwargs=dict(signature.kwargs),
        callbacks=to_plain(options.get("link")),
        errbacks=to_plain(options.get("link_error")),
        chain=to_plain(options.get("chain")),
        chord=to_plain(options.get("chord")),
        root_id=options.get("root_id"),
        parent_id=options.get("parent_id"),
        group_id=options.get("group_id"),
        group_index=options.get("group_index"),
        ignore_result=bool(options.get("ignore_result")),
        reply_to=options.get("reply_to"),
        correlation_id=task_id,
    )


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
