"""The six measurements, run against one system (tq, Celery or Dramatiq) on one broker."""

from __future__ import annotations

import importlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokers import LedgerCounter, RedisCounter
from workers import WorkerFailed, WorkerProcess, running_worker, tree_memory_mb

#: Tasks published before the enqueue timing starts: the first delay() imports the broker's
#: client library, connects and declares the queue (20-100 ms, 15 % of a --quick enqueue).
#: The drain then runs these too.
ENQUEUE_WARMUP_TASKS = 1
#: Round trips run before timing starts (connections, the reply queue, first imports).
RTT_WARMUP_CALLS = 5
#: Each round trip's result must arrive within this (the brief's .get(timeout=10)).
RTT_TIMEOUT_S = 10.0
#: From launching a worker to its first task run, at most.
STARTUP_TIMEOUT_S = 60.0
#: A drain that makes no progress for this long has hung.
DRAIN_STALL_TIMEOUT_S = 30.0
#: Completion counter polling: 10 ms is < 1 % of the shortest drain and costs ~100 GETs/s.
POLL_INTERVAL_S = 0.010
#: Start-up is ~0.5-1 s; poll finer so the figure is not rounded up by the poll.
STARTUP_POLL_INTERVAL_S = 0.002
#: Quiet time after the last round trip before resident memory is read.
IDLE_SETTLE_S = 2.0
#: The module whose group() the group enqueue calls (Dramatiq: not measured).
GROUP_MODULES = {"tq": "tq", "celery": "celery"}


@dataclass(frozen=True)
class SystemUnderTest:
    """tq, Celery or Dramatiq as the benchmark drives it: tasks, queue and completion counter."""

    name: str
    queue: str
    noop: Any
    add: Any  # None: no result backend, no round trip (Dramatiq on RabbitMQ)
    counter: RedisCounter | LedgerCounter
    worker_env: dict[str, str]


@dataclass
class Figures:
    """What was measured for one system; None where the run did not get that far."""

    enqueue_per_s: float | None = None
    drain_per_s: float | None = None
    rtt_p50_ms: float | None = None
    rtt_p99_ms: float | None = None
    startup_s: float | None = None
    idle_rss_mb: float | None = None
    idle_pss_mb: float | None = None
    group_enqueue_per_s: float | None = None
    error: str | None = None
    #: Every timed round trip in order (ms): the JSON keeps them for a look at the tail.
    rtt_samples_ms: list[float] = field(default_factory=list)


#: The Figures fields that are one number each, combined over rounds by their median.
MEDIAN_FIELDS = (
    "enqueue_per_s", "drain_per_s", "rtt_p50_ms", "rtt_p99_ms", "startup_s", "idle_rss_mb",
    "idle_pss_mb", "group_enqueue_per_s",
)  # fmt: skip


def percentile(samples: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile (fraction 0.5 is the median) of the samples."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def wait_until(
    condition_met: Callable[[], bool],
    *,
    worker: WorkerProcess,
    timeout_s: float,
    what: str,
    poll_s: float = POLL_INTERVAL_S,
) -> float:
    """Poll until condition_met() holds; return when it was first seen (perf_counter)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if condition_met():
            return time.perf_counter()
        worker.check_alive()
        if time.perf_counter() > deadline:
            raise WorkerFailed(f"{what}: not within {timeout_s:.0f} s\n{worker.log_tail()}")
        time.sleep(poll_s)


def measure_enqueue(system: SystemUnderTest, count: int) -> float:
    """Publish `count` no-op tasks with delay(), no worker running; return tasks per second."""
    for _ in range(ENQUEUE_WARMUP_TASKS):
        system.noop.delay()
    started = time.perf_counter()
    for _ in range(count):
        system.noop.delay()
    return count / (time.perf_counter() - started)


def measure_group_enqueue(system: SystemUnderTest, count: int) -> float | None:
    """Publish `count` no-op tasks as one group(...).apply_async(); return tasks per second.

    tq sends a group's members in bulk (as app.send_many does), Celery one by one. The tasks
    are left queued: no node runs after this, and run.py deletes the run's queues.
    """
    module = GROUP_MODULES.get(system.name)
    if module is None:
        return None
    group = importlib.import_module(module).group
    started = time.perf_counter()
    group(system.noop.s() for _ in range(count)).apply_async()
    return count / (time.perf_counter() - started)


def measure_drain(system: SystemUnderTest, worker: WorkerProcess, count: int) -> float:
    """Time a fresh node from its first task run to all `count` run; return tasks per second."""
    counter = system.counter
    first_seen = wait_until(
        lambda: counter.read() > 0,
        worker=worker,
        timeout_s=STARTUP_TIMEOUT_S,
        what="drain: the worker ran no task",
    )
    done_at_start = counter.read()
    last_done, last_progress = done_at_start, time.perf_counter()
    # Bounded twice: by the stall timeout below and by a 20 tasks/s floor overall.
    deadline = first_seen + DRAIN_STALL_TIMEOUT_S + count / 20
    while (done := counter.read()) < count:
        now = time.perf_counter()
        if done != last_done:
            last_done, last_progress = done, now
        if now - last_progress > DRAIN_STALL_TIMEOUT_S or now > deadline:
            raise WorkerFailed(
                f"drain: stuck at {done} of {count} tasks run for "
                f"{now - last_progress:.0f} s\n{worker.log_tail()}"
            )
        worker.check_alive()
        time.sleep(POLL_INTERVAL_S)
    finished = time.perf_counter()
    if done_at_start >= count or finished <= first_seen:
        raise WorkerFailed("drain: finished within one poll; use more --tasks")
    return (count - done_at_start) / (finished - first_seen)


def measure_round_trips(system: SystemUnderTest, worker: WorkerProcess, count: int) -> list[float]:
    """Run `count` sequential add.delay(i, i).get(); return each round trip in ms."""
    samples: list[float] = []
    for i in range(-RTT_WARMUP_CALLS, count):
        started = time.perf_counter()
        try:
            value = system.add.delay(i, i).get(timeout=RTT_TIMEOUT_S)
        except Exception as exc:
            worker.check_alive()
            raise WorkerFailed(
                f"round trip add({i}, {i}) failed: {exc!r}\n{worker.log_tail()}"
            ) from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        if value != i + i:
            raise WorkerFailed(f"round trip add({i}, {i}) returned {value!r}")
        if i >= 0:
            samples.append(elapsed_ms)
    return samples


def measure_startup(system: SystemUnderTest, *, run_dir: Path, label: str = "") -> float:
    """Send one no-op task, launch a node and time launch to that task run (seconds)."""
    already_run = system.counter.read()
    system.noop.delay()
    launched = time.perf_counter()
    with running_worker(
        system.name, queue=system.queue, run_dir=run_dir, label=f"{system.name}{label}-startup",
        env=system.worker_env,
    ) as worker:  # fmt: skip
        seen = wait_until(
            lambda: system.counter.read() > already_run,
            worker=worker,
            timeout_s=STARTUP_TIMEOUT_S,
            what="start-up: the task sent before launch did not run",
            poll_s=STARTUP_POLL_INTERVAL_S,
        )
    return seen - launched


def measure_system(
    system: SystemUnderTest,
    *,
    tasks: int,
    round_trips: int,
    run_dir: Path,
    report: Callable[[str], None],
    group_enqueue: bool = True,
    label: str = "",
) -> Figures:
    """Run the measurements in order; on failure keep what was measured and the error.

    `group_enqueue` False leaves the group enqueue out (its tasks stay queued, so only a run's
    last round takes it); `label` tells this round's worker logs apart.
    """
    figures = Figures()
    try:
        report(f"enqueue {tasks:,} no-op tasks")
        figures.enqueue_per_s = measure_enqueue(system, tasks)
        report(f"enqueue: {figures.enqueue_per_s:,.0f} tasks/s; starting a node to drain them")
        with running_worker(
            system.name, queue=system.queue, run_dir=run_dir, label=f"{system.name}{label}-drain",
            env=system.worker_env,
        ) as worker:  # fmt: skip
            figures.drain_per_s = measure_drain(system, worker, tasks + ENQUEUE_WARMUP_TASKS)
            report(f"drain: {figures.drain_per_s:,.0f} tasks/s; {round_trips} round trips")
            if system.add is None:
                report("round trip: not measured (no result backend on this broker)")
            else:
                samples = measure_round_trips(system, worker, round_trips)
                figures.rtt_samples_ms = [round(sample, 3) for sample in samples]
                figures.rtt_p50_ms = percentile(samples, 0.50)
                figures.rtt_p99_ms = percentile(samples, 0.99)
                report(f"round trip p50 {figures.rtt_p50_ms:.2f}, p99 {figures.rtt_p99_ms:.2f} ms")
            time.sleep(IDLE_SETTLE_S)
            worker.check_alive()
            figures.idle_rss_mb, figures.idle_pss_mb = tree_memory_mb(worker.popen.pid)
            report(f"idle RSS {figures.idle_rss_mb:.0f} MB; stopping the node")
        report("start-up: one task queued, launching a fresh node")
        figures.startup_s = measure_startup(system, run_dir=run_dir, label=label)
        report(f"start-up: {figures.startup_s:.2f} s")
        if group_enqueue and system.name in GROUP_MODULES:
            report(f"group enqueue: {tasks:,} no-op tasks in one group, no node running")
            figures.group_enqueue_per_s = measure_group_enqueue(system, tasks)
            report(f"group enqueue: {figures.group_enqueue_per_s:,.0f} tasks/s")
    except Exception as exc:
        figures.error = f"{type(exc).__name__}: {exc}"
        report(f"[red]failed[/red]: {figures.error.splitlines()[0]}")
    return figures


def combine_rounds(rounds: list[Figures]) -> Figures:
    """Return one figure per metric: the median over the rounds that measured it.

    A round that failed keeps its error in the result (with what it measured counted).
    """
    combined = Figures()
    for name in MEDIAN_FIELDS:
        values = [getattr(one, name) for one in rounds if getattr(one, name) is not None]
        setattr(combined, name, statistics.median(values) if values else None)
    combined.error = next((one.error for one in rounds if one.error), None)
    combined.rtt_samples_ms = [sample for one in rounds for sample in one.rtt_samples_ms]
    return combined
