"""ETA and countdown tasks: held unacked in the worker until due, never past RabbitMQ's limit.

RabbitMQ closes a channel on which a delivery stays unacked longer than its consumer_timeout (30
minutes by default since 3.8.15), and with the channel every message the worker holds goes back
to the queue: a worker holding an ETA task due in an hour lost its channel every half hour
(celery#6760). On AMQP a worker therefore holds an ETA task at most
``worker_eta_republish_after`` seconds (15 minutes by default), then sends it back to its queue
as a copy (tq.worker.copies) and acks the one it held; a worker takes the copy and holds it in
turn. A message whose queue cannot be told from its delivery (a topic or fanout exchange) is held
until due, as before. Redis and the embedded broker have no such limit: their workers renew what
they hold (tq.transports.redis_qos).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..protocol import utcnow
from . import copies

if TYPE_CHECKING:
    from .consumer import Worker
    from .request import Held

logger = logging.getLogger("tq.worker")

#: Header counting a copy's hand-backs: its receipt is logged at DEBUG, and not announced again.
HANDBACKS_HEADER = "tq_eta_handbacks"


def is_handed_back(headers: Any) -> bool:
    """Whether a task message is the copy of an ETA task a worker handed back."""
    return copies.counted(headers, HANDBACKS_HEADER) > 0


def hold(worker: Worker, held: Held, delay_s: float) -> None:
    """Keep a task that is not due yet; run it when it is (or hand it back before a limit)."""
    worker.eta_held.add(held)
    worker.update_qos()
    limit_s = republish_after(worker)
    if limit_s is not None and delay_s > limit_s:
        worker.hub.call_later(limit_s, hand_back, worker, held)
    else:
        worker.hub.call_later(delay_s, due, worker, held)


def due(worker: Worker, held: Held) -> None:
    """An ETA task fell due: run it, unless it was revoked or expired meanwhile."""
    if held not in worker.eta_held:
        return  # revoked, or given back (a shutdown, a lost connection)
    worker.eta_held.discard(held)
    worker.update_qos()
    if not worker.drop_if_revoked(held):
        worker.reserved.append(held)
        worker.dispatch()


def republish_after(worker: Worker) -> float | None:
    """How long this worker may hold an ETA task: None for as long as it takes."""
    connection = worker.connection
    limit = worker.app.conf.worker_eta_republish_after
    if not limit or connection is None or connection.transport.driver_type != "amqp":
        return None
    return float(limit)


def hand_back(worker: Worker, held: Held) -> None:
    """Send a held ETA task back to its queue as a copy (see the module)."""
    if held not in worker.eta_held or worker.task_consumer is None:
        return  # run, revoked, or given back with a lost connection
    request = held.request
    try:
        queue = copies.send_back(worker, held, counter=HANDBACKS_HEADER)
    except LookupError:  # a topic or fanout exchange's message: held until due, as before
        _hold_until_due(worker, held)
        return
    except Exception as exc:
        # Held until due instead (a lost connection gives it back to the queue anyway).
        logger.warning("could not hand ETA task %s[%s] back: %r", request.name, request.id, exc)
        _hold_until_due(worker, held)
        return
    worker.eta_held.discard(held)
    worker.update_qos()
    logger.debug(
        "ETA task %s[%s] (due %s) handed back to queue %s",
        request.name,
        request.id,
        request.eta,
        queue,
    )


def _hold_until_due(worker: Worker, held: Held) -> None:
    eta = held.request.eta
    delay_s = (eta - utcnow()).total_seconds() if eta is not None else 0.0
    worker.hub.call_later(max(delay_s, 0.0), due, worker, held)
