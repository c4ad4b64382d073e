"""The worker's event loop across broker connections: a kombu Hub made anew each time a
connection is dropped, turned while the worker consumes, reconnects or finishes its running
tasks without a broker; connecting, consuming, and dropping a lost connection."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from kombu import Consumer
from kombu.asynchronous import Hub, set_event_loop

from .. import sdnotify
from ..events import HEARTBEAT_INTERVAL_S
from . import control, handoff, outcomes
from .acks import BatchedAcks
from .connection import (
    BrokerUnreachable,
    StoppedWhileConnecting,
    connect_with_retry,
    drop_sockets,
    keep_heartbeats,
    recoverable_errors,
    restore_orphans,
)
from .logs import defer_flushes, flush_deferred
from .pool import PreforkPool

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("tq.worker")

RUNNING, WARM, COLD, STOPPED = "RUNNING", "WARM", "COLD", "STOPPED"

#: How often the parent checks time limits and pool health.
HOUSEKEEPING_INTERVAL_S = 0.1
#: A connection lost sooner than this after it was made counts as a failed attempt to connect
#: (connect_with_retry backs off), so a broker that refuses what the worker declares does not
#: make it reconnect in a tight loop.
STABLE_CONNECTION_S = 1.0


def build_hub(worker: Worker) -> Hub:
    """A new event loop with no broker in it: the pool, signals and housekeeping.

    Made at start and each time a connection is dropped: what the connection had put in
    the old one (its sockets, heartbeats, ETA timers, a rate-limit wake-up) goes with it.
    """
    old = worker.current_hub
    hub = Hub()
    set_event_loop(hub)
    worker.current_hub = hub
    worker.turns = None
    worker.rate_wakeup_pending = False
    if worker.pool is not None and isinstance(worker.pool, PreforkPool):
        for child in worker.pool.children:
            if child.result_reader is not None:
                hub.add_reader(child.result_reader.fileno(), worker.pool._on_readable, child)
    deliver = getattr(worker.pool, "deliver", None)  # in-process pools: work done meanwhile
    if deliver is not None:
        hub.call_soon(deliver)
    hub.add_reader(worker.signals.reader, worker.signals.on_wakeup)
    hub.call_repeatedly(HOUSEKEEPING_INTERVAL_S, worker.housekeeping)
    hub.on_tick.add(flush_deferred)
    if old is not None:
        _retire(old)
    return hub


def turn(worker: Worker) -> None:
    """One turn of the event loop: due callbacks and timers, then I/O (waiting until the
    next timer at most, HOUSEKEEPING_INTERVAL_S)."""
    if worker.turns is None:
        worker.turns = worker.hub.create_loop()
    try:
        next(worker.turns)
    except StopIteration:
        worker.turns = None
    if worker.state == WARM and not worker.active and not worker.queued:
        worker.state = STOPPED


def start_consuming(worker: Worker) -> None:
    """Consume the worker's queues (and remote control, events) on its new connection."""
    connection = worker.connection
    # Put back by a pool process that died or retired while the broker was away: the
    # broker has given those messages back to their queue already.
    worker.reserved.clear()
    channel = connection.channel()
    if connection.transport.driver_type == "amqp":
        worker.acks = BatchedAcks(channel)
        worker.hub.on_tick.add(worker.acks.flush)
    consumer = Consumer(
        channel,
        queues=worker.queues,
        on_message=worker.on_message,
        accept=worker.accept,
        auto_declare=True,
    )
    consumer.qos(prefetch_count=worker.prefetch_limit)
    # Before consume(): py-amqp may hand over waiting messages while it waits for
    # ConsumeOk, and their task-received events need a dispatcher.
    worker.events.connect(connection)
    consumer.consume()
    worker.task_consumer = consumer
    if not worker.app.conf.worker_disable_remote_control:
        worker.control_consumer = control.listen(worker, connection)
    worker.hub.call_repeatedly(HEARTBEAT_INTERVAL_S, worker.events.heartbeat)
    worker.hub.propagate_errors = connection.connection_errors + connection.channel_errors
    worker.turns = None  # a loop reads propagate_errors once, when it is made
    connection.transport.register_with_event_loop(connection.connection, worker.hub)
    keep_heartbeats(worker.hub, connection)


def drop_connection(worker: Worker) -> None:
    """Let go of a lost connection and everything that came through it; a new hub follows."""
    # Messages from a dead connection go back to their queue (AMQP does it on the server;
    # Redis and the embedded broker keep them as "unacked": restore_orphans returns them
    # once the broker answers again (connection.restore_orphans), not after the visibility timeout).
    # collect(): no closing handshake, which a broker gone silent would never answer.
    worker.reserved.clear()
    worker.eta_held.clear()
    handoff.take_back_all(worker)
    for held in list(worker.active.values()) + list(worker.queued.values()):
        held.acknowledged = True if held.acks_late else held.acknowledged
    if worker.task_consumer is not None:
        worker.orphaned_channels.append(worker.task_consumer.channel)
    worker.task_consumer = None
    worker.acks = None
    worker.control_consumer = None
    worker.events.disconnect()
    if worker.connection is not None:
        transport = getattr(worker.connection, "_transport", None)
        for channel in list(getattr(transport, "channels", None) or ()):
            drop_sockets(channel)
        with contextlib.suppress(Exception):
            worker.connection.collect()
    worker.connection = None
    build_hub(worker)


def run(worker: Worker) -> None:
    """Connect, consume, and reconnect after a loss; while there is no broker the loop
    still turns (results, time limits, signals), and a warm stop lets the running tasks
    finish without one."""
    announced = False
    failures = 0  # connections lost again right after they were made, in a row
    connected_at = 0.0
    while worker.state != STOPPED:
        try:
            if worker.connection is None and worker.state == RUNNING:
                worker.connection = connect_with_retry(
                    worker.app,
                    first=not announced,
                    failures=failures,
                    keep_trying=lambda: worker.state == RUNNING,
                    on_wait=lambda: turn(worker),
                )
                connected_at = time.monotonic()
                start_consuming(worker)
                restore_orphans(worker.orphaned_channels)
                outcomes.store_pending(worker)
                if not announced:
                    worker.events.online()
                    logger.info("%s ready.", worker.hostname)
                    sdnotify.ready(f"{worker.hostname} consuming {len(worker.queues)} queue(s)")
                    announced = True
            # Log lines are written once per turn of the loop (before it waits), not one
            # write per line; outside the loop (connecting, stopping) each is written at once.
            defer_flushes(True)
            try:
                while worker.state != STOPPED and (
                    worker.connection is not None or worker.state != RUNNING
                ):
                    turn(worker)
            finally:
                defer_flushes(False)
        except StoppedWhileConnecting:
            pass  # a warm stop: the loop above lets the running tasks finish
        except BrokerUnreachable as exc:
            logger.critical("consumer: %s. Stopping.", exc)
            worker.gave_up = True
            worker.request_stop(cold=False, reason="broker unreachable")
        except recoverable_errors(worker.connection) as exc:
            lasted_s = time.monotonic() - connected_at
            failures = failures + 1 if lasted_s < STABLE_CONNECTION_S else 0
            if worker.state == RUNNING:
                logger.error(
                    "consumer: Connection to broker lost: %r. "
                    "Trying to re-establish the connection...",
                    exc,
                )
            else:
                logger.warning(
                    "consumer: Connection to broker lost while stopping: %r. "
                    "Waiting for %d running task(s) without it.",
                    exc,
                    len(worker.active) + len(worker.queued),
                )
            drop_connection(worker)


def _retire(hub: Hub) -> None:
    """Free a dropped hub's poller and waker (file descriptors): each reconnection makes a new
    hub, and a broker that comes and goes for days must not use them up."""
    with contextlib.suppress(Exception):
        hub._close_poller()
    waker = getattr(hub, "_waker", None)
    if waker is not None:
        with contextlib.suppress(Exception):
            waker.close()
