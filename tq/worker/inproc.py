"""Pools that run requests in the worker's own process (threads, solo), and make_pool, which
makes the kind -P names (prefork: tq.worker.pool)."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .pool import Child, ExitCallback, PreforkPool, ResultCallback, least_loaded

logger = logging.getLogger("tq.worker")


class ThreadPool:
    """Threads in the worker process: for I/O-bound tasks that release the GIL."""

    name = "threads"
    depth = 1

    def __init__(
        self,
        *,
        size: int,
        run_job: Callable[[Any], Any],
        on_result: ResultCallback,
        call_soon: Callable[..., Any],
    ) -> None:
        self.size = size
        self.run_job = run_job
        self.on_result = on_result
        self.call_soon = call_soon
        self.children = [Child(index=i + 1, pid=os.getpid()) for i in range(size)]
        # Results wait here for the loop, not in the loop's callbacks: the worker makes a new
        # loop when it loses the broker, and a result left in the old one would hold its
        # thread's slot for ever. The new loop calls deliver() first.
        self._finished: deque[tuple[Child, Any]] = deque()

    def start(self) -> None:
        return None

    def idle(self) -> list[Child]:
        return [child for child in self.children if not child.busy]

    def free_child(self) -> Child | None:
        return least_loaded(self.children, self.depth)

    @staticmethod
    def encode(job: Any) -> Any:
        return job

    @staticmethod
    def can_wait(encoded: Any) -> bool:
        return True

    def send(self, child: Child, job_id: int, payload: Any) -> None:
        child.jobs.append(job_id)

        def work() -> None:
            self._finished.append((child, self.run_job(payload)))
            self.call_soon(self.deliver)

        threading.Thread(target=work, name=f"ThreadPoolWorker-{child.index}", daemon=True).start()

    def deliver(self) -> None:
        """Hand finished jobs' results to on_result, in the loop's thread."""
        while self._finished:
            child, result = self._finished.popleft()
            self.on_result(child, result)

    def signal_child(self, child: Child, signum: int) -> None:
        logger.warning("the threads pool cannot terminate a running task; it will finish")

    def signal_job(self, child: Child, job_id: int, signum: int) -> bool:
        self.signal_child(child, signum)
        return True

    def take_back(self, child: Child, job_id: int) -> bool:
        return False

    def check_alive(self) -> None:
        return None

    def grow(self, count: int) -> None:
        start = len(self.children)
        self.children += [Child(index=start + i + 1, pid=os.getpid()) for i in range(count)]
        self.size += count

    def shrink(self, count: int) -> int:
        idle = self.idle()[: min(count, len(self.children) - 1)]
        for child in idle:
            self.children.remove(child)
        self.size -= len(idle)
        return len(idle)

    def stop(self, *, kill: bool = False) -> None:
        return None

    def pids(self) -> list[int]:
        return [os.getpid()]


class SoloPool(ThreadPool):
    """Runs each task in the worker's own loop, one at a time."""

    name = "solo"

    def __init__(
        self,
        *,
        run_job: Callable[[Any], Any],
        on_result: ResultCallback,
        call_soon: Callable[..., Any],
    ) -> None:
        super().__init__(size=1, run_job=run_job, on_result=on_result, call_soon=call_soon)
        self._waiting: deque[tuple[Child, Any]] = deque()  # run by deliver(), in the loop

    def send(self, child: Child, job_id: int, payload: Any) -> None:
        child.jobs.append(job_id)
        self._waiting.append((child, payload))
        self.call_soon(self.deliver)

    def deliver(self) -> None:
        """Run the jobs handed over before this call, one after another (each reports at once)."""
        for _ in range(len(self._waiting)):
            child, payload = self._waiting.popleft()
            self.on_result(child, self.run_job(payload))


def make_pool(
    kind: str,
    *,
    size: int,
    child_main: Callable[..., None],
    run_job: Callable[[Any], Any],
    on_result: ResultCallback,
    on_exit: ExitCallback,
    add_reader: Callable[..., Any],
    remove_reader: Callable[[int], Any],
    call_soon: Callable[..., Any],
) -> Any:
    """Return a pool of the kind -P names."""
    if kind == "prefork":
        return PreforkPool(
            size=size,
            child_main=child_main,
            on_result=on_result,
            on_exit=on_exit,
            add_reader=add_reader,
            remove_reader=remove_reader,
        )
    if kind == "threads":
        return ThreadPool(size=size, run_job=run_job, on_result=on_result, call_soon=call_soon)
    return SoloPool(run_job=run_job, on_result=on_result, call_soon=call_soon)
