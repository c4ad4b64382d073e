"""What runs inside a prefork pool process: read a job, execute it, report, repeat."""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ..errors import SoftTimeLimitExceeded
from .executor import execute
from .logs import reopen_log_files, restore_caller_lookup
from .outcomes import log_outcome
from .pipes import JobReader, send_pickled
from .pool import CURRENT, LAST_READ, PREFORK_DEPTH, SKIP, SOFT_FOR

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("tq.worker")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A SIGKILLed worker must leave no orphaned pool processes behind.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


_running: dict[str, Any] = {"task": False, "shared": None}


def _raise_soft_time_limit(signum: int, frame: Any) -> None:
    # The parent may signal just as a task ends: only interrupt the task the signal was for,
    # never the loop or the next task.
    shared = _running["shared"]
    if _running["task"] and (shared is None or shared[SOFT_FOR] == shared[CURRENT]):
        raise SoftTimeLimitExceeded("SoftTimeLimitExceeded()")


def rss_kib() -> int:
    """Return this process's peak resident memory in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_loop(
    app: App,
    hostname: str,
    index: int,
    jobs: Connection,
    results: Connection,
    inherited_fds: list[int],
    shared: Any,
    lock: Any,
    *,
    max_tasks: int | None,
    max_memory_kib: int | None,
    on_start: Any = None,
) -> None:
    """Serve jobs until the parent sends None, the pipe closes, or a recycling limit is hit.

    `shared` holds the job running now and one the parent took back; `lock` makes "is this job
    taken back? then I run it" one step against the parent's "is it running? then skip it".
    """
    _die_with_parent()
    signal.set_wakeup_fd(-1)
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C reaches the whole group; the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _raise_soft_time_limit)
    signal.signal(signal.SIGHUP, lambda signum, frame: reopen_log_files())
    for fd in inherited_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if on_start is not None:
        on_start(index)
    _running["shared"] = shared
    restore_caller_lookup()
    done = 0
    reader = JobReader(jobs.fileno())
    while True:
        try:
            job = reader.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        job_id, request = job
        with lock:
            shared[LAST_READ] = job_id
            skipped = job_id in shared[SKIP : SKIP + PREFORK_DEPTH]
            if not skipped:
                shared[CURRENT] = job_id
        if skipped:
            send_pickled(results, (job_id, None, False))
            continue
        _running["task"] = True
        try:
            outcome = execute(app, request, hostname)
        finally:
            _running["task"] = False
            shared[CURRENT] = 0
        log_outcome(request.name, request.id, outcome)
        done += 1
        leaving = bool(max_tasks and done >= max_tasks) or bool(
            max_memory_kib and rss_kib() > max_memory_kib
        )
        # Say we are leaving with the result, so the parent sends us nothing more.
        send_pickled(results, (job_id, outcome, leaving))
        if leaving:
            logger.info(
                "pool process %d: recycled after %d tasks at %d KiB", os.getpid(), done, rss_kib()
            )
            return
