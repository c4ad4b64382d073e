"""The worker's parent process: consume, hold ETA tasks, dispatch to the pool, ack, shut down."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kombu import Consumer
from kombu.asynchronous import Hub, set_event_loop

from .. import states
from ..errors import InvalidTaskError, TaskRevokedError, TimeLimitExceeded, WorkerLostError
from ..protocol import parse_task_message, utcnow
from . import control
from .child import child_loop
from .executor import execute, store
from .pool import Child, PreforkPool, SoloPool, ThreadPool
from .request import Held

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task

logger = logging.getLogger("tq.worker")

#: How often the parent checks time limits and pool health.
HOUSEKEEPING_INTERVAL_S = 0.1
#: Back-off between attempts to reach a broker that is down.
RECONNECT_DELAYS_S = (0.5, 1, 2, 4, 8, 16)

RUNNING, WARM, COLD, STOPPED = "RUNNING", "WARM", "COLD", "STOPPED"


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
        self.reserved: deque[Held] = deque()
        self.eta_held: set[Held] = set()
        self.active: dict[int, Held] = {}
        self.revoked_ids = control.BoundedIdSet()
        self.processed: Counter[str] = Counter()
        self.started_at = time.time()
        self._next_job_id = 1
        self._pending_signals: list[int] = []
        self._connection: Any = None
        self._consumer: Consumer | None = None
        self._control_consumer: Any = None
        self._hub: Hub | None = None
        self.pool: Any = None

    @property
    def hub(self) -> Hub:
        """The event loop of the current connection."""
        assert self._hub is not None, "the hub exists once run() has started"
        return self._hub

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
        kind = self.options.pool
        if kind == "prefork":
            return PreforkPool(
                size=self.options.concurrency,
                child_main=self._child_main,
                on_result=self._on_child_result,
                on_exit=self._on_child_exit,
                add_reader=lambda fd, cb, *args: self.hub.add_reader(fd, cb, *args),
                remove_reader=lambda fd: self.hub.remove(fd),
            )

        def run_job(payload: Any) -> Any:
            job_id, request = payload
            return (job_id, execute(self.app, request, self.hostname), False)

        call_soon = lambda cb, *args: self.hub.call_soon(cb, *args)  # noqa: E731
        if kind == "threads":
            return ThreadPool(
                size=self.options.concurrency,
                run_job=run_job,
                on_result=self._on_child_result,
                call_soon=call_soon,
            )
        return SoloPool(run_job=run_job, on_result=self._on_child_result, call_soon=call_soon)

    def _child_main(self, index: int, jobs: Any, results: Any, inherited: list[int]) -> None:
        child_loop(
            self.app,
            self.hostname,
            index,
            jobs,
            results,
            inherited,
            max_tasks=self.options.max_tasks_per_child,
            max_memory_kib=self.options.max_memory_per_child,
        )

    def _build_hub(self) -> Hub:
        hub = Hub()
        set_event_loop(hub)
        self._hub = hub
        if self.pool is not None and isinstance(self.pool, PreforkPool):
            for child in self.pool.children:
                if child.result_reader is not None:
                    hub.add_reader(child.result_reader.fileno(), self.pool._on_readable, child)
        hub.add_reader(self._signal_reader, self._on_signal_wakeup)
        hub.call_repeatedly(HOUSEKEEPING_INTERVAL_S, self._housekeeping)
        return hub

    def _install_signals(self) -> None:
        reader, writer = os.pipe()
        os.set_blocking(reader, False)
        os.set_blocking(writer, False)
        self._signal_reader, self._signal_writer = reader, writer
        signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._pending_signals.append(signum)

    def _on_signal_wakeup(self) -> None:
        try:
            while os.read(self._signal_reader, 512):
                pass
        except BlockingIOError:
            pass
        while self._pending_signals:
            signum = self._pending_signals.pop(0)
            if signum == signal.SIGQUIT or self.state in (WARM, COLD):
                self.request_stop(cold=True, reason=f"{signal.Signals(signum).name}")
            else:
                self.request_stop(cold=False, reason=f"{signal.Signals(signum).name}")

    # -- connection --------------------------------------------------------------------------

    def _connect(self) -> None:
        delays = iter(RECONNECT_DELAYS_S)
        attempt = 0
        while True:
            connection = self.app.broker_connection()
            try:
                connection.ensure_connection(max_retries=1)
                self._connection = connection
                logger.info("Connected to %s", connection.as_uri())
                return
            except connection.connection_errors + (OSError,) as exc:
                connection.release()
                attempt += 1
                limit = self.app.conf.broker_connection_max_retries
                if limit is not None and attempt > limit:
                    raise
                delay = next(delays, RECONNECT_DELAYS_S[-1])
                logger.error(
                    "consumer: Cannot connect to %s: %s. Trying again in %.1f seconds...",
                    connection.as_uri(),
                    exc,
                    delay,
                )
                self._sleep_responsively(delay)
                if self.state != RUNNING:
                    raise ConnectionAbortedError("stopped while connecting") from exc

    def _sleep_responsively(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.state == RUNNING:
            time.sleep(0.05)
            if self._pending_signals:
                self._on_signal_wakeup()

    def _start_consuming(self) -> None:
        connection = self._connection
        channel = connection.channel()
        consumer = Consumer(
            channel,
            queues=self.queues,
            on_message=self._on_message,
            accept=self.accept,
            auto_declare=True,
        )
        consumer.qos(prefetch_count=self.prefetch_limit)
        consumer.consume()
        self._consumer = consumer
        if not self.app.conf.worker_disable_remote_control:
            self._control_consumer = control.listen(self, connection)
        self.hub.propagate_errors = connection.connection_errors + connection.channel_errors
        connection.transport.register_with_event_loop(connection.connection, self.hub)

    def _drop_connection(self) -> None:
        # Messages from a dead connection go back to their queue on the broker; forget them.
        self.reserved.clear()
        self.eta_held.clear()
        for held in self.active.values():
            held.acknowledged = True if held.acks_late else held.acknowledged
        self._consumer = None
        self._control_consumer = None
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                pass
        self._connection = None

    def _update_qos(self) -> None:
        if self._consumer is not None:
            self._consumer.qos(prefetch_count=self.prefetch_limit)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until shut down; return the process exit code."""
        self._install_signals()
        self.pool = self._make_pool()
        self._build_hub()
        self.pool.start()
        try:
            self._run_loop()
        finally:
            self._shutdown()
        return self.exit_code

    def _run_loop(self) -> None:
        announced = False
        while self.state != STOPPED:
            try:
                if self._connection is None:
                    self._connect()
                    self._build_hub()
                    self._start_consuming()
                    if not announced:
                        logger.info("%s ready.", self.hostname)
                        announced = True
                loop = self.hub.create_loop()
                while self.state != STOPPED:
                    next(loop)
                    if self.state == WARM and not self.active:
                        self.state = STOPPED
            except ConnectionAbortedError:
                self.state = STOPPED
            except (OSError, *_connection_errors(self._connection)) as exc:
                if self.state != RUNNING:
                    self.state = STOPPED
                    break
                logger.error(
                    "consumer: Connection to broker lost: %r. Trying to re-establish the connection...", exc
                )
                self._drop_connection()

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
        self._stop_consuming()

    def _stop_consuming(self) -> None:
        for consumer in (self._consumer,):
            if consumer is not None:
                try:
                    consumer.cancel()
                except Exception as exc:
                    logger.debug("consumer cancel failed: %r", exc)
        for held in list(self.reserved) + list(self.eta_held):
            held.reject(requeue=True)
        self.reserved.clear()
        self.eta_held.clear()

    def _shutdown(self) -> None:
        cold = self.exit_code != 0
        if cold:
            for held in self.active.values():
                if held.acks_late:
                    held.reject(requeue=True)
            self._stop_consuming()
        if self.pool is not None:
            self.pool.stop(kill=cold)
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                pass
        signal.set_wakeup_fd(-1)

    # -- receiving ---------------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        if self.state != RUNNING:
            message.reject(requeue=True)
            return
        try:
            body = message.decode()
            request = parse_task_message(
                message.headers, body, message.properties, message.delivery_info
            )
        except InvalidTaskError as exc:
            logger.error("Rejected an invalid task message: %s", exc)
            message.reject(requeue=False)
            return
        except Exception as exc:  # ContentDisallowed, DecodeError, anything a peer could send
            logger.error(
                "Rejected a message that cannot be decoded (content type %r): %s",
                message.content_type,
                exc,
            )
            message.reject(requeue=False)
            return
        task = self.app.tasks.get(request.name)
        if task is None:
            logger.error(
                "Received unregistered task of type %r: rejected. The task is not in "
                "this worker's app; import its module via include=[...]",
                request.name,
            )
            message.reject(requeue=False)
            return
        held = self._hold(request, message, task)
        logger.info("Task %s[%s] received", request.name, request.id)
        if self._discard_if_revoked(held):
            return
        if request.eta is not None:
            delay = (request.eta - utcnow()).total_seconds()
            if delay > 0:
                self.eta_held.add(held)
                self._update_qos()
                self.hub.call_later(delay, self._eta_due, held)
                return
        self.reserved.append(held)
        self._dispatch()

    def _hold(self, request: Any, message: Any, task: Task) -> Held:
        conf = self.app.conf
        hard = (
            request.time_limit or task.time_limit or self.options.time_limit or conf.task_time_limit
        )
        soft = (
            request.soft_time_limit
            or task.soft_time_limit
            or self.options.soft_time_limit
            or conf.task_soft_time_limit
        )
        return Held(
            request=request,
            message=message,
            acks_late=bool(task.option("acks_late", "task_acks_late")),
            reject_on_worker_lost=bool(
                task.option("reject_on_worker_lost", "task_reject_on_worker_lost")
            ),
            acks_on_failure=bool(
                task.option("acks_on_failure_or_timeout", "task_acks_on_failure_or_timeout")
            ),
            time_limit=hard,
            soft_time_limit=soft,
        )

    def _eta_due(self, held: Held) -> None:
        if held not in self.eta_held:
            return
        self.eta_held.discard(held)
        self._update_qos()
        if not self._discard_if_revoked(held):
            self.reserved.append(held)
            self._dispatch()

    def _discard_if_revoked(self, held: Held) -> bool:
        request = held.request
        reason = None
        if request.id in self.revoked_ids:
            reason = "revoked"
            logger.info("Discarding revoked task: %s[%s]", request.name, request.id)
        elif request.expires is not None and request.expires < utcnow():
            reason = "expired"
            logger.info("Discarding expired task: %s[%s]", request.name, request.id)
        if reason is None:
            return False
        store(self.app, request, TaskRevokedError(reason), states.REVOKED, None, self.hostname)
        held.ack()
        return True

    # -- dispatching -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self.reserved and self.state == RUNNING:
            idle = self.pool.idle()
            if not idle:
                return
            held = self.reserved.popleft()
            if self._discard_if_revoked(held):
                continue
            job_id = self._next_job_id
            self._next_job_id += 1
            child = idle[0]
            held.job_id, held.child = job_id, child
            held.started_at, held.time_start_epoch = time.monotonic(), time.time()
            self.active[job_id] = held
            if not held.acks_late:
                held.ack()
            self.pool.send(child, job_id, (job_id, held.request))

    def _on_child_result(self, child: Child, payload: Any) -> None:
        job_id, outcome, leaving = payload
        held = self.active.pop(job_id, None)
        child.job_id = None
        child.tasks_done += 1
        if held is not None:
            self._finish(held, outcome)
        if leaving:
            child.extra["retiring"] = True
        elif child.extra.get("retiring") and child.job_writer is not None:
            child.job_writer.send(None)
        self._dispatch()

    def _finish(self, held: Held, outcome: Any) -> None:
        request = held.request
        self.processed[request.name] += 1
        if outcome.state == states.SUCCESS:
            logger.info(
                "Task %s[%s] succeeded in %.4fs: %s",
                request.name,
                request.id,
                outcome.runtime_s,
                outcome.result_repr,
            )
        elif outcome.state == states.RETRY:
            logger.info(
                "Task %s[%s] retry: Retry in %ss: %s",
                request.name,
                request.id,
                outcome.retry_when,
                outcome.exception_repr,
            )
        elif outcome.state == states.FAILURE:
            logger.error(
                "Task %s[%s] raised unexpected: %s\n%s",
                request.name,
                request.id,
                outcome.exception_repr,
                outcome.traceback or "",
            )
        elif outcome.state == states.REJECTED:
            logger.warning(
                "Task %s[%s] rejected (requeue=%s): %s",
                request.name,
                request.id,
                outcome.requeue,
                outcome.exception_repr,
            )
            held.reject(requeue=outcome.requeue)
            return
        if held.acks_late and outcome.state == states.FAILURE and not held.acks_on_failure:
            held.reject(requeue=False)
        else:
            held.ack()

    def _on_child_exit(self, child: Child) -> None:
        exitcode = child.exitcode()
        held = self.active.pop(child.job_id, None) if child.job_id is not None else None
        if held is not None:
            self._fail_lost_job(held, exitcode)
        if self.state == RUNNING and len(self.pool.children) < self.pool.size:
            self.pool.spawn()
        self._dispatch()

    def _fail_lost_job(self, held: Held, exitcode: int | None) -> None:
        request = held.request
        self.processed[request.name] += 1
        if held.timed_out:
            error: Exception = TimeLimitExceeded(held.time_limit)
            logger.error(
                "Hard time limit (%ss) exceeded for %s[%s]",
                held.time_limit,
                request.name,
                request.id,
            )
        elif held.terminated_by is not None:
            logger.info(
                "Terminated task %s[%s] with %s",
                request.name,
                request.id,
                signal.Signals(held.terminated_by).name,
            )
            store(
                self.app,
                request,
                TaskRevokedError("terminated"),
                states.REVOKED,
                None,
                self.hostname,
            )
            held.ack()
            return
        else:
            how = (
                f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
                if exitcode and exitcode < 0
                else f"exitcode {exitcode}"
            )
            error = WorkerLostError(f"Worker exited prematurely: {how} Job: {held.job_id}.")
            if held.acks_late and held.reject_on_worker_lost:
                logger.error(
                    "Task %s[%s]: %s; requeued (reject_on_worker_lost)",
                    request.name,
                    request.id,
                    error,
                )
                held.reject(requeue=True)
                return
            logger.error("Task %s[%s] raised unexpected: %r", request.name, request.id, error)
        store(self.app, request, error, states.FAILURE, None, self.hostname)
        if held.acks_late and not held.acks_on_failure:
            held.reject(requeue=False)
        else:
            held.ack()

    # -- housekeeping ------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        for held in list(self.active.values()):
            if held.started_at is None or held.child is None:
                continue
            elapsed = now - held.started_at
            if held.soft_time_limit and not held.soft_sent and elapsed >= held.soft_time_limit:
                held.soft_sent = True
                logger.warning(
                    "Soft time limit (%ss) exceeded for %s[%s]",
                    held.soft_time_limit,
                    held.request.name,
                    held.request.id,
                )
                self.pool.signal_child(held.child, signal.SIGUSR1)
            if held.time_limit and not held.timed_out and elapsed >= held.time_limit:
                held.timed_out = True
                self.pool.signal_child(held.child, signal.SIGKILL)
        self.pool.check_alive()

    def terminate_task(self, task_id: str, signum: int) -> bool:
        """Kill the pool process running `task_id`; return whether it was running here."""
        for held in self.active.values():
            if held.request.id == task_id and held.child is not None:
                held.terminated_by = signum
                self.pool.signal_child(held.child, signum)
                return True
        return False


def _connection_errors(connection: Any) -> tuple[type[BaseException], ...]:
    if connection is None:
        return ()
    return tuple(connection.connection_errors) + tuple(connection.channel_errors)
