"""Stopping a worker: signals into actions (TERM/INT warm stop, QUIT or a second signal cold,
HUP reopens logs), giving back what it holds, and the last steps before it exits."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from . import handoff, outcomes
from .connection import SHUTDOWN_BROKER_WAIT_S, bound_broker_waits

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("tq.worker")


class ShutdownSignals:
    """Catches TERM, INT and QUIT and turns them into warm or cold stops inside the loop."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pending: list[int] = []
        self.reader = -1
        self._writer = -1

    def install(self) -> None:
        """Handle the signals; their arrival wakes the loop through a pipe (set_wakeup_fd)."""
        self.reader, self._writer = os.pipe()
        os.set_blocking(self.reader, False)
        os.set_blocking(self._writer, False)
        signal.set_wakeup_fd(self._writer, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        signal.set_wakeup_fd(-1)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def on_wakeup(self) -> None:
        """Drain the wake-up pipe and act on the signals that arrived."""
        try:
            while os.read(self.reader, 512):
                pass
        except (BlockingIOError, OSError):
            pass
        from .consumer import RUNNING

        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGHUP:
                self.worker.reopen_logs()
                continue
            name = signal.Signals(signum).name
            cold = signum == signal.SIGQUIT or self.worker.state != RUNNING
            self.worker.request_stop(cold=cold, reason=name)


def stop_consuming(worker: Worker) -> None:
    """Take no more messages; give back the reserved, ETA-held and waiting ones, unrun."""
    bound_broker_waits(worker.connection)
    worker.broker_silent = broker_silent(worker)
    if worker.task_consumer is not None and not worker.broker_silent:
        try:
            worker.task_consumer.cancel()
        except Exception as exc:
            logger.debug("consumer cancel failed: %r", exc)
    waiting = handoff.take_back_all(worker)  # handed out before the reserved ones: older
    unrun = waiting + list(worker.reserved) + list(worker.eta_held)
    if worker.broker_silent:
        # Each give-back would wait socket_timeout for nothing; Redis keeps them as unacked,
        # and workers requeue them once this one's claims are older than visibility_timeout.
        # No more events either (a heartbeat would wait too), nor the transport's periodic
        # checks, nor a restore when kombu's finalizers close the channel at exit.
        worker.events.disconnect()
        abandon = getattr(getattr(worker.connection, "transport", None), "abandon", None)
        if abandon is not None:
            abandon()
        logger.warning(
            "The broker does not answer: %d message(s) this node holds stay unacked, and go back "
            "to their queue after visibility_timeout",
            len(unrun),
        )
    else:
        for held in reversed(unrun):  # each goes to the head of its queue: the oldest last
            held.give_back()
    worker.reserved.clear()
    worker.eta_held.clear()


def broker_silent(worker: Worker) -> bool:
    """Whether a Redis broker fails to answer a PING within SHUTDOWN_BROKER_WAIT_S.

    Stopping talks to the broker once per message given back and for the last acks, the offline
    event and the restore on close, each waiting up to socket_timeout (10 s) on a Redis gone
    silent: a minute or more. AMQP sockets are bounded instead (bound_broker_waits).
    """
    consumer = worker.task_consumer
    answers = getattr(consumer.channel, "answers", None) if consumer is not None else None
    if answers is None:
        return False
    try:
        return not answers(SHUTDOWN_BROKER_WAIT_S)
    except Exception:  # noqa: BLE001 - a broker that cannot even be asked does not answer
        return True


def finish(worker: Worker) -> None:
    """The last steps once the loop has ended: a cold stop gives back even the running tasks
    that ack late; then the pool stops, the last acks and the offline event go out, and the
    connection closes (each wait for a silent broker bounded: bound_broker_waits, and on Redis
    broker_silent)."""
    cold = worker.exit_code != 0
    if cold:
        stop_consuming(worker)
        if not worker.broker_silent:
            for held in worker.active.values():
                if held.acks_late:
                    held.reject(requeue=True)
            for held in reversed(worker.queued.values()):  # never begun: first in line again
                held.give_back()
    if worker.pool is not None:
        worker.pool.stop(kill=cold)
    if worker.pending_stores:  # the broker never came back: the backend may answer still
        outcomes.store_pending(worker)
    if worker.broker_silent:
        pass  # no acks, event or close that would wait in vain: exiting closes the sockets
    elif worker.connection is not None:
        if worker.acks is not None:
            try:
                worker.acks.flush()
            except Exception as exc:  # the broker redelivers what it did not hear about
                logger.warning("could not send the last acks: %r", exc)
        worker.events.offline()
        with contextlib.suppress(Exception):
            worker.connection.release()
    worker.signals.uninstall()
