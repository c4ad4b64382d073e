"""The prefork pool: child processes forked from the worker; jobs and results travel over pipes."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .pipes import PipeReader

logger = logging.getLogger("tq.worker")

#: Seconds a stopping child gets to exit after its sentinel before it is killed.
CHILD_STOP_TIMEOUT_S = 5.0

#: Jobs a pool process holds at once: the one it runs and one waiting in its pipe, so that it
#: starts the next task without waiting for the parent to read the last result.
PREFORK_DEPTH = 2

#: A job larger than this waits in the parent for an idle pool process, not in a busy one's pipe
#: (64 KiB on Linux): the parent's write would block its loop until the running task ended.
WAITING_JOB_MAX_BYTES = 32768

#: Slots of a child's shared words: the job it runs (0: none), the job a soft time limit signal
#: is meant for, the last job it read (job ids only grow), then one slot per job it may hold for
#: a job it must skip when it reads it.
CURRENT, SOFT_FOR, LAST_READ, SKIP = 0, 1, 2, 3

#: Longest the parent waits for a child's lock (held only for a few instructions by a child).
LOCK_TIMEOUT_S = 1.0

ResultCallback = Callable[["Child", Any], None]
ExitCallback = Callable[["Child"], None]


@dataclass(eq=False)
class Child:
    """One pool process (or thread slot) and the jobs handed to it, oldest (running) first."""

    index: int
    pid: int
    job_writer: Connection | None = None
    result_reader: Connection | None = None
    #: Reads result_reader's messages in chunks.
    results: PipeReader | None = None
    process: Any = None
    jobs: deque[int] = field(default_factory=deque)
    #: Jobs taken back while they waited in the pipe: the child reports them skipped.
    taken_back: set[int] = field(default_factory=set)
    shared: Any = None
    lock: Any = None
    tasks_done: int = 0
    exited: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def exitcode(self) -> int | None:
        """Return the exit code (negative: killed by that signal), reaping the process."""
        if self.process is None:
            return 0
        self.process.join(timeout=1.0)
        return self.process.exitcode


def least_loaded(children: list[Child], depth: int) -> Child | None:
    """The child with the fewest jobs that can take one more (idle ones first), or None."""
    best: Child | None = None
    for child in children:
        held = len(child.jobs)
        if held >= depth or child.extra.get("retiring"):
            continue
        if best is None or held < len(best.jobs):
            best = child
            if held == 0:
                break
    return best


class PreforkPool:
    """Child processes forked from the worker; jobs and results travel over pipes."""

    name = "prefork"
    depth = PREFORK_DEPTH

    def __init__(
        self,
        *,
        size: int,
        child_main: Callable[..., None],
        on_result: ResultCallback,
        on_exit: ExitCallback,
        add_reader: Callable[..., Any],
        remove_reader: Callable[[int], Any],
    ) -> None:
        self.size = size
        self.child_main = child_main
        self.on_result = on_result
        self.on_exit = on_exit
        self.add_reader = add_reader
        self.remove_reader = remove_reader
        self.children: list[Child] = []
        self._context = multiprocessing.get_context("fork")
        self._next_index = 1

    def start(self) -> None:
        """Fork the initial children."""
        for _ in range(self.size):
            self.spawn()

    def _free_index(self) -> int:
        used = {child.index for child in self.children}
        index = 1
        while index in used:
            index += 1
        return index

    def spawn(self) -> Child:
        """Fork one child and start reading its results."""
        job_reader, job_writer = self._context.Pipe(duplex=False)
        result_reader, result_writer = self._context.Pipe(duplex=False)
        index = self._free_index()
        inherited = [fd for child in self.children for fd in _parent_fds(child)]
        shared = self._context.RawArray("q", SKIP + self.depth)
        lock = self._context.Lock()
        # Objects that exist before the fork are never traversed by the child's collector, so
        # the child does not touch (and copy) the parent's pages: a smaller pool in memory.
        gc.freeze()
        process = self._context.Process(
            target=self.child_main,
            args=(index, job_reader, result_writer, inherited, shared, lock),
            name=f"ForkPoolWorker-{index}",
            daemon=False,
        )
        process.start()
        job_reader.close()
        result_writer.close()
        assert process.pid is not None, "a started process has a pid"
        child = Child(
            index=index,
            pid=process.pid,
            job_writer=job_writer,
            result_reader=result_reader,
            process=process,
            shared=shared,
            lock=lock,
        )
        child.results = PipeReader(result_reader.fileno())
        self.children.append(child)
        self.add_reader(result_reader.fileno(), self._on_readable, child)
        return child

    def _on_readable(self, child: Child) -> None:
        if child.result_reader is None or child.results is None:
            return
        try:
            results = child.results.read()
        except (EOFError, OSError):  # the child is gone
            self._forget(child)
            self.on_exit(child)
            return
        # Every result read is accounted for (else the parent would count the job as running
        # for ever) before an error from handling one goes on to the loop: an OSError from a
        # broker write there is the connection's, not a sign the child died.
        failure: Exception | None = None
        for result in results:
            try:
                self.on_result(child, result)
            except Exception as exc:
                failure = failure or exc
            if child.result_reader is None:
                break  # on_result forgot the child (it left)
        if failure is not None:
            raise failure

    def _forget(self, child: Child) -> None:
        if child.exited:
            return
        child.exited = True
        if child.result_reader is not None:
            self.remove_reader(child.result_reader.fileno())
            child.result_reader.close()
            child.result_reader = None
        if child.job_writer is not None:
            child.job_writer.close()
            child.job_writer = None
        if child in self.children:
            self.children.remove(child)

    def check_alive(self) -> None:
        """Notice children that died without closing their pipe (rare: a leaked fd)."""
        for child in list(self.children):
            if child.process is not None and not child.process.is_alive():
                self._on_readable(child)
                if not child.exited:
                    self._forget(child)
                    self.on_exit(child)

    def idle(self) -> list[Child]:
        """Children that can take a job now (not busy, not on their way out)."""
        return [
            child for child in self.children if not child.busy and not child.extra.get("retiring")
        ]

    def free_child(self) -> Child | None:
        """The child to hand the next job to: an idle one, else one with room in its pipe."""
        return least_loaded(self.children, self.depth)

    @staticmethod
    def encode(job: Any) -> bytes:
        """The job as send() takes it: pickled (this raises for a request that cannot be)."""
        return pickle.dumps(job, pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def can_wait(encoded: bytes) -> bool:
        """Whether the job may wait in a busy child's pipe without blocking the parent."""
        return len(encoded) <= WAITING_JOB_MAX_BYTES

    def send(self, child: Child, job_id: int, encoded: bytes) -> None:
        """Give an encoded job to a child with a free slot; it runs after the jobs it has."""
        assert child.job_writer is not None
        child.job_writer.send_bytes(encoded)
        child.jobs.append(job_id)

    @staticmethod
    def was_read(child: Child, job_id: int) -> bool:
        """Whether the child read the job (ran it, or began to): false for one still in its pipe."""
        return bool(child.shared[LAST_READ] >= job_id)

    def signal_child(self, child: Child, signum: int) -> None:
        """Send a signal to one child, ignoring one that has just exited."""
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def take_back(self, child: Child, job_id: int) -> bool:
        """Stop a child from running a job still waiting in its pipe; False once it has read it."""
        if child.exited:
            return False
        # A child holds at most `depth` jobs, so a slot not naming a pending skip is free.
        slot = next(
            (
                index
                for index in range(SKIP, SKIP + self.depth)
                if child.shared[index] not in child.taken_back
            ),
            None,
        )
        if slot is None:  # never expected; not taking it back is always safe
            return False
        with _locked(child.lock) as locked:
            # Read already (running, or even finished with its result still in the pipe)?
            if not locked or child.shared[LAST_READ] >= job_id:
                return False
            child.shared[slot] = job_id
        child.taken_back.add(job_id)
        return True

    def signal_job(self, child: Child, job_id: int, signum: int) -> bool:
        """Signal the child only while it runs this job (never the job after it)."""
        if child.exited:
            return False
        with _locked(child.lock) as locked:
            if locked and child.shared[CURRENT] != job_id:
                return False
            if signum == signal.SIGUSR1:
                child.shared[SOFT_FOR] = job_id
            self.signal_child(child, signum)
        return True

    def grow(self, count: int) -> None:
        for _ in range(count):
            self.spawn()
        self.size += count

    def shrink(self, count: int) -> int:
        """Retire up to `count` children, idle ones first; return how many.

        The sentinel goes behind the jobs already in a child's pipe: it runs them, then exits.
        """
        count = min(count, len(self.children) - 1)
        victims = sorted(self.children, key=lambda child: len(child.jobs))[: max(count, 0)]
        for child in victims:
            child.extra["retiring"] = True
            if child.job_writer is not None:
                try:
                    child.job_writer.send(None)
                except OSError:
                    pass  # it died an instant ago: its exit is handled when its pipe ends
        self.size -= len(victims)
        return len(victims)

    def stop(self, *, kill: bool = False) -> None:
        """Ask every child to exit (or kill them), and reap them."""
        for child in list(self.children):
            if kill:
                self.signal_child(child, signal.SIGKILL)
            elif child.job_writer is not None:
                try:
                    child.job_writer.send(None)
                except OSError:
                    pass
        for child in list(self.children):
            if child.process is not None:
                child.process.join(timeout=CHILD_STOP_TIMEOUT_S)
                if child.process.is_alive():
                    self.signal_child(child, signal.SIGKILL)
                    child.process.join(timeout=CHILD_STOP_TIMEOUT_S)
            self._forget(child)

    def pids(self) -> list[int]:
        return [child.pid for child in self.children]


class _locked:
    """Hold a child's lock for a block, giving up after LOCK_TIMEOUT_S (a child that died
    holding it): the block learns whether it holds the lock."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.held = False

    def __enter__(self) -> bool:
        self.held = bool(self.lock.acquire(timeout=LOCK_TIMEOUT_S))
        return self.held

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.lock.release()


def _parent_fds(child: Child) -> list[int]:
    fds = []
    for conn in (child.job_writer, child.result_reader):
        if conn is not None:
            fds.append(conn.fileno())
    return fds
