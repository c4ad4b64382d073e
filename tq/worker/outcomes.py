"""What the parent does when a task ends: log it, tell monitors, store what the child could not, ack."""

from __future__ import annotations

import logging
import signal
from collections import OrderedDict
from typing import TYPE_CHECKING

from .. import states
from ..errors import TaskRevokedError, TimeLimitExceeded, WorkerLostError
from . import copies, tasklines
from .executor import Outcome, store
from .request import Held

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("tq.worker")

#: Task ids whose lost runs a node remembers (the most recent ones).
LOST_RUNS_KEPT = 10_000
#: Header of a requeued copy: how many runs of the task its pool process died in, on any node.
LOST_RUNS_HEADER = "tq_lost_runs"


class LostRuns:
    """How many times a pool process died running each task, on this node."""

    def __init__(self, keep: int = LOST_RUNS_KEPT) -> None:
        self.keep = keep
        self._counts: OrderedDict[str, int] = OrderedDict()

    def add(self, task_id: str) -> int:
        """Count one more lost run of the task; return its count."""
        count = self._counts.pop(task_id, 0) + 1
        self._counts[task_id] = count
        if len(self._counts) > self.keep:
            self._counts.popitem(last=False)
        return count


def log_outcome(name: str, task_id: str, outcome: Outcome) -> None:
    """Log how a task ended, where it ran (a prefork pool process logs its own, as Celery's
    do: `INFO/ForkPoolWorker-1] Task ... succeeded in ...`; threads and solo, the worker)."""
    if outcome.state == states.SUCCESS:
        tasklines.info(
            logger,
            "Task %s[%s] succeeded in %.4fs: %s",
            name,
            task_id,
            outcome.runtime_s,
            outcome.result_repr,
        )
    elif outcome.state == states.RETRY:
        logger.info(
            "Task %s[%s] retry: Retry in %ss: %s",
            name,
            task_id,
            outcome.retry_when,
            outcome.exception_repr,
        )
    elif outcome.state == states.FAILURE:
        logger.error(
            "Task %s[%s] raised unexpected: %s\n%s",
            name,
            task_id,
            outcome.exception_repr,
            outcome.traceback or "",
        )


def finish(worker: Worker, held: Held, outcome: Outcome) -> None:
    """Announce a task the pool finished (log_outcome logged it), then ack or reject it."""
    request = held.request
    name, task_id = request.name, request.id
    worker.processed[name] += 1
    events = worker.events
    if outcome.state == states.SUCCESS:
        events.task(
            "task-succeeded", uuid=task_id, result=outcome.result_repr, runtime=outcome.runtime_s
        )
    elif outcome.state in (states.RETRY, states.FAILURE):
        events.task(
            "task-retried" if outcome.state == states.RETRY else "task-failed",
            uuid=task_id,
            exception=outcome.exception_repr,
            traceback=outcome.traceback,
        )
    elif outcome.state == states.REJECTED:
        logger.warning(
            "Task %s[%s] rejected (requeue=%s): %s",
            name,
            task_id,
            outcome.requeue,
            outcome.exception_repr,
        )
        events.task("task-rejected", uuid=task_id, requeue=outcome.requeue)
        held.reject(requeue=outcome.requeue)
        return
    if held.acks_late and outcome.state == states.FAILURE and not held.acks_on_failure:
        held.reject(requeue=False)
    else:
        held.ack()


def fail_lost_job(worker: Worker, held: Held, exitcode: int | None) -> None:
    """A pool process died running this task: time limit, terminate, or lost."""
    request = held.request
    worker.processed[request.name] += 1
    if held.terminated_by is not None and not held.timed_out:
        logger.info(
            "Terminated task %s[%s] with %s",
            request.name,
            request.id,
            signal.Signals(held.terminated_by).name,
        )
        store_soon(worker, held, TaskRevokedError("terminated"), states.REVOKED)
        held.ack()
        worker.events.task(
            "task-revoked",
            uuid=request.id,
            terminated=True,
            signum=held.terminated_by,
            expired=False,
        )
        return
    error: Exception
    if held.timed_out:
        error = TimeLimitExceeded(held.time_limit)
        logger.error(
            "Hard time limit (%ss) exceeded for %s[%s]", held.time_limit, request.name, request.id
        )
    else:
        how = (
            f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
            if exitcode and exitcode < 0
            else f"exitcode {exitcode}"
        )
        error = WorkerLostError(f"Worker exited prematurely: {how} Job: {held.job_id}.")
        if held.acks_late and held.reject_on_worker_lost:
            # Counted in the message (a copy carries it to whichever node runs it next) and, for
            # a message that cannot be copied, in this node's memory.
            carried = copies.counted(held.message.headers, LOST_RUNS_HEADER) + 1
            lost = max(carried, worker.lost_runs.add(request.id))
            limit = worker.app.conf.worker_lost_requeue_limit
            if not limit or lost <= limit:
                logger.error(
                    "Task %s[%s]: %s; requeued (reject_on_worker_lost, %s)",
                    request.name,
                    request.id,
                    error,
                    f"{lost} of {limit}" if limit else "no limit",
                )
                _requeue_counted(worker, held)
                worker.events.task("task-rejected", uuid=request.id, requeue=True)
                return
            # A poison task (it kills its process every time) must not loop for ever.
            error = WorkerLostError(
                f"Worker exited prematurely: {how} Job: {held.job_id}. Not requeued again: its "
                f"pool process died in each of its {lost} runs "
                f"(worker_lost_requeue_limit={limit})."
            )
        logger.error("Task %s[%s] raised unexpected: %r", request.name, request.id, error)
    store_soon(worker, held, error, states.FAILURE)
    worker.events.task("task-failed", uuid=request.id, exception=repr(error), traceback=None)
    if held.acks_late and not held.acks_on_failure:
        held.reject(requeue=False)
    else:
        held.ack()


def store_soon(worker: Worker, held: Held, result: Exception, state: str) -> None:
    """Store the state of a task whose pool process died; while the broker is away, once it is
    back. The result backend is often the same server, gone too, and the write would hold the
    loop (time limits, signals, results) for as long as it waits (up to 30 s)."""
    if worker.connection is None:
        worker.pending_stores.append((held.request, result, state))
        return
    store(worker.app, held.request, result, state, None, worker.hostname)


def store_pending(worker: Worker) -> None:
    """Write the states kept while the broker was away (store_soon)."""
    while worker.pending_stores:
        request, result, state = worker.pending_stores.pop(0)
        store(worker.app, request, result, state, None, worker.hostname)


def fail_unsendable(worker: Worker, held: Held, error: Exception) -> None:
    """A request no pool process can be given (pickling it failed): FAILURE, never run."""
    request = held.request
    worker.processed[request.name] += 1
    logger.error(
        "Task %s[%s] raised unexpected: its request cannot be passed to a pool process: %r",
        request.name,
        request.id,
        error,
    )
    store_soon(worker, held, error, states.FAILURE)
    worker.events.task("task-failed", uuid=request.id, exception=repr(error), traceback=None)
    if held.acks_late and not held.acks_on_failure:
        held.reject(requeue=False)
    else:
        held.ack()


def _requeue_counted(worker: Worker, held: Held) -> None:
    """Requeue a task whose pool process died, its lost runs counted in a copy where it can be."""
    if held.acknowledged:
        return  # already back in its queue (a lost connection gave back what it held)
    try:
        copies.send_back(worker, held, counter=LOST_RUNS_HEADER)
    except Exception as exc:  # a topic or fanout exchange's message, a lost connection
        logger.debug("requeued without a count (%r)", exc)
        held.reject(requeue=True)


def discard_revoked(worker: Worker, held: Held, reason: str) -> None:
    """Drop a held request that was revoked or expired: store REVOKED, ack, tell monitors."""
    request = held.request
    logger.info("Discarding %s task: %s[%s]", reason, request.name, request.id)
    store(worker.app, request, TaskRevokedError(reason), states.REVOKED, None, worker.hostname)
    held.ack()
    worker.events.task(
        "task-revoked", uuid=request.id, terminated=False, signum=None, expired=reason == "expired"
    )
