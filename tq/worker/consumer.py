"""The worker's parent process: consume, hold ETA tasks, dispatch to the pool, ack, shut down."""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kombu import Consumer
from kombu.asynchronous import Hub
from kombu.clocks import LamportClock

from ..jsontext import register_json_decoder
from ..protocol import utcnow
from . import control, eta, handoff, loop, outcomes, shutdown, tasklines
from .acks import BatchedAcks
from .child import child_loop
from .connection import preload_broker_modules
from .executor import execute
from .heartbeat import WorkerEvents
from .inproc import make_pool
from .limits import enforce_time_limits
from .logs import reopen_log_files
from .loop import COLD, RUNNING, STOPPED, WARM
from .pool import Child
from .request import Held, receive, receive_rules, received_event_fields
from .shutdown import ShutdownSignals

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("tq.worker")

__all__ = ["COLD", "RUNNING", "STOPPED", "WARM", "Worker", "WorkerOptions"]


@dataclass
class WorkerOptions:
    """How a worker was asked to run (CLI options, after defaults)."""

    hostname: str
    concurrency: int
    pool: str = "prefork"
    queues: list[str] = field(default_factory=list)
    exclude_queues: list[str] = field(default_factory=list)
    prefetch_multiplier: int = 4
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    send_events: bool = False
    autoscale: tuple[int, int] | None = None


class Worker:
    """One worker node: the parent loop over a kombu Hub, and its pool."""

    def __init__(self, app: App, options: WorkerOptions) -> None:
        self.app = app
        self.options = options
        self.hostname = options.hostname
        self.state = RUNNING
        self.exit_code = 0
        self.queues = self._select_queues()
        self.accept = list(app.conf.accept_content)
        self.receive_rules = receive_rules(app)  # a bad signing key stops it before it consumes
        self.reserved: deque[Held] = deque()
        self.eta_held: set[Held] = set()
        self.active: dict[int, Held] = {}
        self.queued: dict[int, Held] = {}  # handed to a busy pool process, not begun
        self.behind_long_task = False  # a queued job waits behind a long task (housekeeping)
        self.revoked_ids = control.BoundedIdSet()
        self.clock = LamportClock()
        self.events = WorkerEvents(self, task_events=options.send_events)
        self.autoscale = options.autoscale
        default_rate = app.conf.task_default_rate_limit
        self.rate_buckets = {
            name: bucket
            for name, task in app.tasks.items()
            if (bucket := control.rate_bucket(task.rate_limit or default_rate))
        }
        self.rate_wakeup_pending = False
        self.orphaned_channels: list[Any] = []
        self.last_busy = time.monotonic()
        self.processed: Counter[str] = Counter()
        self.lost_runs = outcomes.LostRuns()
        # States of tasks whose pool process died while the broker was away (store_soon).
        self.pending_stores: list[tuple[Any, Exception, str]] = []
        self.broker_silent = False  # found at shutdown (shutdown.broker_silent)
        self.started_at = time.time()
        self._next_job_id = 1
        self.signals = ShutdownSignals(self)
        self.connection: Any = None
        self.task_consumer: Consumer | None = None
        self.acks: BatchedAcks | None = None
        self.control_consumer: Any = None
        self.current_hub: Hub | None = None  # made anew for each connection (loop.build_hub)
        self.turns: Any = None  # the hub's loop (a generator), made on first turn
        self.gave_up = False  # the broker stayed unreachable (BrokerUnreachable): exit 1
        self.pool: Any = None

    @property
    def hub(self) -> Hub:
        """The event loop of the current connection."""
        assert self.current_hub is not None, "the hub exists once run() has started"
        return self.current_hub

    # -- set-up ------------------------------------------------------------------------------

    def _select_queues(self) -> list[Any]:
        names = self.options.queues or [self.app.conf.task_default_queue]
        names = [name for name in names if name not in set(self.options.exclude_queues)]
        return [self.app.queue_by_name(name) for name in names]

    @property
    def prefetch_limit(self) -> int:
        multiplier = self.options.prefetch_multiplier
        if multiplier <= 0:
            return 0
        return self.options.concurrency * multiplier + len(self.eta_held)

    def _make_pool(self) -> Any:
        def child_main(
            index: int, jobs: Any, results: Any, inherited: list[int], shared: Any, lock: Any
        ) -> None:
            child_loop(
                self.app,
                self.hostname,
                index,
                jobs,
                results,
                inherited,
                shared,
                lock,
                max_tasks=self.options.max_tasks_per_child,
                max_memory_kib=self.options.max_memory_per_child,
            )

        def run_job(payload: Any) -> Any:
            job_id, request = payload
            outcome = execute(self.app, request, self.hostname)
            outcomes.log_outcome(request.name, request.id, outcome)
            return (job_id, outcome, False)

        return make_pool(
            self.options.pool,
            size=self.options.concurrency,
            child_main=child_main,
            run_job=run_job,
            on_result=lambda child, payload: handoff.on_result(self, child, payload),
            on_exit=self._on_child_exit,
            add_reader=lambda fd, cb, *args: self.hub.add_reader(fd, cb, *args),
            remove_reader=lambda fd: self.hub.remove(fd),
            call_soon=lambda cb, *args: self.hub.call_soon(cb, *args),
        )

    def update_qos(self) -> None:
        if self.task_consumer is not None:
            self.task_consumer.qos(prefetch_count=self.prefetch_limit)

    # -- the loop (tq.worker.loop) -----------------------------------------------------------

    def run(self) -> int:
        """Run until shut down; return the process exit code."""
        self.signals.install()
        register_json_decoder()
        preload_broker_modules(self.app)
        self.pool = self._make_pool()
        loop.build_hub(self)
        self.pool.start()
        try:
            loop.run(self)
        finally:
            shutdown.finish(self)
        return 1 if self.gave_up and not self.exit_code else self.exit_code

    def request_stop(self, *, cold: bool, reason: str = "") -> None:
        """Begin a warm (finish active tasks) or cold (kill them) shutdown."""
        if cold:
            logger.warning(
                "worker: Cold shutdown (MainProcess)%s", f" on {reason}" if reason else ""
            )
            self.state = STOPPED
            self.exit_code = 1
            return
        if self.state != RUNNING:
            return
        logger.warning("worker: Warm shutdown (MainProcess)%s", f" on {reason}" if reason else "")
        self.state = WARM
        shutdown.stop_consuming(self)

    # -- receiving ---------------------------------------------------------------------------

    def on_message(self, message: Any) -> None:
        if self.acks is not None:
            self.acks.delivered(message)
        if self.state != RUNNING:
            message.reject(requeue=True)
            return
        options = self.options
        held = receive(
            self.app, message, self.receive_rules, options.time_limit, options.soft_time_limit
        )
        if held is None:
            return
        request = held.request
        again = eta.is_handed_back(request.headers)  # received and announced once already
        if not again and self.events.task_events:
            self.events.task("task-received", **received_event_fields(request))
        if request.id in self.revoked_ids or request.eta is not None or request.expires:
            _log_received(request, again)
            if self.drop_if_revoked(held):
                return
            if request.eta is not None:
                delay = (request.eta - utcnow()).total_seconds()
                if delay > 0:
                    eta.hold(self, held, delay)
                    return
            self.reserved.append(held)
            self.dispatch()
            return
        # Logged before the hand-off, which writes the log out first: the pool process logs the
        # task's end, which must come after this line.
        _log_received(request, again)
        self.reserved.append(held)
        self.dispatch()

    def drop_if_revoked(self, held: Held) -> bool:
        """Drop a request revoked or expired (stored, acked, announced); say whether it was."""
        request = held.request
        if request.id in self.revoked_ids:
            outcomes.discard_revoked(self, held, "revoked")
            return True
        if request.expires is not None and request.expires < utcnow():
            outcomes.discard_revoked(self, held, "expired")
            return True
        return False

    # -- dispatching -------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand reserved requests to pool processes with room (idle ones first)."""
        if self.state != RUNNING or self.connection is None:
            return
        if self.queued and (self.behind_long_task or not self.reserved):
            handoff.rebalance(self)
        if not self.reserved:
            return
        self.last_busy = time.monotonic()
        limited: list[Held] = []
        wait_s: float | None = None
        while self.reserved:
            child = self.pool.free_child()
            if child is None:
                break
            held = self.reserved.popleft()
            if self.drop_if_revoked(held):
                continue
            bucket = self.rate_buckets.get(held.request.name)
            if bucket is not None and not bucket.can_consume(1):
                limited.append(held)
                expected = bucket.expected_time(1)
                wait_s = expected if wait_s is None else min(wait_s, expected)
                continue
            if not handoff.hand(self, held, child):
                break
        self.reserved.extendleft(reversed(limited))
        if wait_s is not None and not self.rate_wakeup_pending:
            self.rate_wakeup_pending = True
            self.hub.call_later(max(wait_s, 0.001), self._rate_wakeup)

    def _rate_wakeup(self) -> None:
        self.rate_wakeup_pending = False
        self.dispatch()

    def next_job_id(self) -> int:
        job_id = self._next_job_id
        self._next_job_id += 1
        return job_id

    def _on_child_exit(self, child: Child) -> None:
        exitcode = child.exitcode()
        held = handoff.on_exit(self, child)
        if held is not None:
            outcomes.fail_lost_job(self, held, exitcode)
        if self.state == RUNNING and len(self.pool.children) < self.pool.size:
            self.pool.spawn()
        self.dispatch()

    # -- housekeeping ------------------------------------------------------------------------

    def housekeeping(self) -> None:
        now = time.monotonic()
        enforce_time_limits(self.active.values(), self.pool, now)
        self.pool.check_alive()
        self.behind_long_task = handoff.waits_behind_long_task(self, now)
        if self.behind_long_task:
            self.dispatch()
        if self.autoscale is not None and control.autoscale_step(self, now):
            self.update_qos()
            self.dispatch()

    def terminate_task(self, task_id: str, signum: int) -> bool:
        """Kill the pool process running `task_id` (revoke it if it still waits); found here?"""
        return handoff.terminate(self, task_id, signum)

    # -- what remote control calls ---------------------------------------------------------

    def reopen_logs(self) -> None:
        """Reopen log files here and in the pool (SIGHUP, after the supervisor rotated them)."""
        reopen_log_files()
        for child in list(self.pool.children) if self.options.pool == "prefork" else []:
            self.pool.signal_child(child, signal.SIGHUP)

    def discard_revoked(self, held: Held) -> None:
        """Drop a held request that was revoked."""
        outcomes.discard_revoked(self, held, "revoked")


def _log_received(request: Any, again: bool) -> None:
    if again:
        logger.debug("Task %s[%s] received again (ETA)", request.name, request.id)
    else:
        tasklines.info(logger, "Task %s[%s] received", request.name, request.id)
