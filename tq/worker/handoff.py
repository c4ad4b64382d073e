"""Handing requests to the pool: a pool process runs one job and holds the next in its pipe.

A job handed to a child that is still busy *waits* (`worker.queued`): it is not acked, announced
or timed until the child's previous result arrives, because a child runs its jobs in order and
that is when it begins the next. So the child never idles while the parent reads a result, and
what the parent knows is exact: a job has begun once every job before it in that child has
reported. A waiting job can be taken back (revoke, warm shutdown, a lost connection, or an idle
child elsewhere, so that a short task never sits behind a long one) until the child reads it:
the child marks each job it reads, and skips one the parent took back (pool.take_back).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import outcomes
from .logs import flush_deferred
from .pool import Child
from .request import Held

if TYPE_CHECKING:
    from .consumer import Worker

#: A job waiting behind a task that has run this long moves to a child with room.
LONG_TASK_S = 0.1


def hand(worker: Worker, held: Held, child: Child) -> bool:
    """Give a request to a child: it begins now if the child is free, else it waits its turn.

    False when it cannot go now: too large to wait in a busy child's pipe, with no child idle.
    It is back at the head of the line then, and so is one whose child has just died.
    """
    pool = worker.pool
    job_id = worker.next_job_id()
    try:
        encoded = pool.encode((job_id, held.request))
    except Exception as exc:  # noqa: BLE001 - what pickling raises: RecursionError, TypeError...
        outcomes.fail_unsendable(worker, held, exc)
        return True
    if child.jobs and not pool.can_wait(encoded):
        idle = pool.idle()
        if not idle:
            worker.reserved.appendleft(held)
            return False
        child = idle[0]
    begins_now = not child.jobs
    # Whatever this process logged before the job is on disk before the pool process can run
    # it and log lines of its own to the same file (log lines are otherwise written once per
    # turn of the loop: logs.defer_flushes).
    flush_deferred()
    try:
        pool.send(child, job_id, encoded)
    except BrokenPipeError:
        # The child died an instant ago (its exit is handled once the loop reads the end of its
        # result pipe): the job never reached it, so it goes back to the head of the line,
        # unrun and uncounted. Not a broker error to reconnect for.
        child.extra["retiring"] = True  # no more jobs for it: it is gone
        worker.reserved.appendleft(held)
        return True
    held.job_id, held.child = job_id, child
    if begins_now:
        _begin(worker, held)
        worker.events.task("task-started", uuid=held.request.id)
    else:
        worker.queued[job_id] = held
    return True


def _begin(worker: Worker, held: Held) -> None:
    assert held.job_id is not None
    held.started_at, held.time_start_epoch = time.monotonic(), time.time()
    worker.active[held.job_id] = held
    if not held.acks_late:
        held.ack()


def _begin_next(worker: Worker, child: Child) -> None:
    """The child has reported its oldest job: the one after it (if any, and not taken back) runs."""
    if not child.jobs or child.jobs[0] in child.taken_back:
        return
    held = worker.queued.pop(child.jobs[0], None)
    if held is not None:
        _begin(worker, held)
        worker.events.task("task-started", uuid=held.request.id)


def on_result(worker: Worker, child: Child, payload: Any) -> None:
    """A child reported a job: finished (an Outcome), or skipped because it was taken back."""
    job_id, outcome, leaving = payload
    if job_id in child.jobs:
        child.jobs.remove(job_id)
    held = worker.active.pop(job_id, None)
    if outcome is None:
        child.taken_back.discard(job_id)
    else:
        child.tasks_done += 1
    if leaving:  # recycled: it reads nothing more, so what waits in its pipe goes elsewhere
        child.extra["retiring"] = True
        _requeue_waiting(worker, child)
    else:
        _begin_next(worker, child)
    # The child gets its next job before the parent logs, announces and acks this one, so
    # that bookkeeping overlaps the next task instead of leaving the child idle.
    worker.dispatch()
    if held is not None and outcome is not None:
        outcomes.finish(worker, held, outcome)


def on_exit(worker: Worker, child: Child) -> Held | None:
    """A child died: return the job it was running (if any); the ones waiting go back first."""
    running = None
    if child.jobs and child.jobs[0] in worker.active:
        job_id = child.jobs.popleft()
        running = worker.active.pop(job_id)
        if not worker.pool.was_read(child, job_id):
            # Begun as far as the parent knew (its result came before), but the child died
            # before it read the job: it never ran, and goes back first, unrun and uncounted.
            _requeue_waiting(worker, child)
            running.job_id = running.child = running.started_at = None
            worker.reserved.appendleft(running)
            return None
    _requeue_waiting(worker, child)
    return running


def _requeue_waiting(worker: Worker, child: Child) -> None:
    """Put the jobs that will never run in this child back at the head of the reserved line."""
    back = []
    for job_id in child.jobs:
        held = worker.queued.pop(job_id, None)
        if held is not None:
            held.job_id = held.child = None
            back.append(held)
    child.jobs.clear()
    child.taken_back.clear()
    worker.reserved.extendleft(reversed(back))


def take_back(worker: Worker, held: Held) -> bool:
    """Take a waiting job back from its child; False once the child has read it."""
    job_id, child = held.job_id, held.child
    if job_id is None or job_id not in worker.queued or child is None:
        return False
    if not worker.pool.take_back(child, job_id):
        return False
    del worker.queued[job_id]
    held.job_id = held.child = None
    return True


def take_back_all(worker: Worker) -> list[Held]:
    """Take back every waiting job its child has not read yet; return them."""
    return [held for held in list(worker.queued.values()) if take_back(worker, held)]


def rebalance(worker: Worker) -> None:
    """Move jobs that wait behind another child's task, before newer work is handed out.

    A job waiting behind a task that has run for LONG_TASK_S goes to a child with room whose
    own task is younger (an idle one first), so a short task never waits for a long one while
    other children run newer work; with nothing reserved, any waiting job goes to an idle child.
    """
    now = time.monotonic()
    for held in list(worker.queued.values()):
        child = held.child
        if child is None or not _behind_long_task(worker, child, now):
            if worker.reserved:
                continue
            targets = worker.pool.idle()
        else:
            pool = worker.pool
            targets = sorted(
                (
                    other
                    for other in pool.children
                    if other is not child
                    and len(other.jobs) < pool.depth
                    and not other.extra.get("retiring")
                    and not _behind_long_task(worker, other, now)
                ),
                key=lambda other: len(other.jobs),
            )
        if targets and take_back(worker, held):
            hand(worker, held, targets[0])


def waits_behind_long_task(worker: Worker, now: float) -> bool:
    """Whether any queued job waits behind a task that has run LONG_TASK_S (checked by the
    worker's housekeeping, so that a drain of short tasks pays nothing for it)."""
    return any(
        held.child is not None and _behind_long_task(worker, held.child, now)
        for held in worker.queued.values()
    )


def _behind_long_task(worker: Worker, child: Child, now: float) -> bool:
    """Whether the child runs a task that began LONG_TASK_S ago or more."""
    running = worker.active.get(child.jobs[0]) if child.jobs else None
    started = running.started_at if running is not None else None
    return started is not None and now - started >= LONG_TASK_S


def find(worker: Worker, task_id: str) -> tuple[str, Held] | None:
    """Where this worker holds a task in the pool: ("active"|"queued", held), or None."""
    for label, holder in (("active", worker.active), ("queued", worker.queued)):
        for held in holder.values():
            if held.request.id == task_id:
                return label, held
    return None


def terminate(worker: Worker, task_id: str, signum: int) -> bool:
    """Stop a task in the pool: a waiting one is revoked, a running one gets the signal."""
    found = find(worker, task_id)
    if found is None:
        return False
    label, held = found
    if label == "queued" and take_back(worker, held):
        outcomes.discard_revoked(worker, held, "revoked")
        return True
    held.terminated_by = signum
    if held.child is not None and held.job_id is not None:
        worker.pool.signal_job(held.child, held.job_id, signum)
    return True
