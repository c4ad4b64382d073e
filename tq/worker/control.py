"""Remote-control commands that change a worker: revoke, events, pool, limits, consumers."""

from __future__ import annotations

import logging
import signal as signal_module
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kombu.utils.limits import TokenBucket

from .. import topology
from ..control import make_mailbox
from ..errors import ConfigError
from . import handoff

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("tq.worker")

#: Revoked ids are remembered up to this many (oldest forgotten first), as Celery's LimitedSet.
REVOKED_IDS_MAX = 50_000
_RATE_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0}

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}
#: Commands that stop work or kill tasks; refused when worker_allow_destructive_control is off.
DESTRUCTIVE = frozenset({"shutdown", "pool_shrink", "terminate"})


class BoundedIdSet:
    """A set of task ids that forgets the oldest past a maximum size."""

    def __init__(self, maxlen: int = REVOKED_IDS_MAX) -> None:
        self.maxlen = maxlen
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, task_id: str) -> None:
        self._ids[task_id] = time.time()
        self._ids.move_to_end(task_id)
        while len(self._ids) > self.maxlen:
            self._ids.popitem(last=False)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def handler(fun: Handler) -> Handler:
    """Register a remote-control command under its function's name."""
    HANDLERS[fun.__name__] = fun
    return fun


def ok(text: Any) -> dict[str, Any]:
    return {"ok": text}


def nok(text: Any) -> dict[str, Any]:
    return {"error": text}


def parse_rate(rate: str | float | None) -> float | None:
    """Return tasks per second for '10/s', '5/m', '100/h' or a number; None or '' disables."""
    if rate in (None, "", 0, "0"):
        return None
    if isinstance(rate, (int, float)):
        return float(rate)
    count, _, unit = str(rate).partition("/")
    try:
        return float(count) / _RATE_UNITS_S[unit or "s"]
    except (ValueError, KeyError):
        raise ConfigError(
            f"Invalid rate limit string: {rate!r} (use e.g. '10/s', '5/m', '100/h')"
        ) from None


def rate_bucket(rate: str | float | None) -> TokenBucket | None:
    per_second = parse_rate(rate)
    return TokenBucket(per_second, capacity=1) if per_second else None


def signal_number(name: str | int | None) -> int:
    """Return the number of a signal given as 'TERM', 'SIGKILL', 9 or None (TERM)."""
    if name is None:
        return signal_module.SIGTERM
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    text = str(name).upper()
    return int(signal_module.Signals[text if text.startswith("SIG") else "SIG" + text])


@handler
def revoke(
    worker: Worker,
    task_id: str | list[str],
    terminate: bool = False,
    signal: str | None = None,
    **_kw: Any,
) -> dict[str, Any]:
    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    if terminate and not worker.app.conf.worker_allow_destructive_control:
        return nok(
            "revoke --terminate refused: worker_allow_destructive_control is off on this worker"
        )
    for one in ids:
        worker.revoked_ids.add(one)
    if terminate:
        signum = signal_number(signal)
        killed = [one for one in ids if worker.terminate_task(one, signum)]
        return ok(f"terminate: {', '.join(killed)}" if killed else "terminate: tasks unknown")
    # Settle what this worker holds at once, so clients see REVOKED without waiting for an ETA.
    for held in list(worker.reserved):
        if held.request.id in ids:
            worker.reserved.remove(held)
            worker.discard_revoked(held)
    for held in list(worker.eta_held):
        if held.request.id in ids:
            worker.eta_held.discard(held)
            worker.discard_revoked(held)
            worker.update_qos()
    for held in list(worker.queued.values()):  # waiting in a pool process's pipe, not begun
        if held.request.id in ids and handoff.take_back(worker, held):
            worker.discard_revoked(held)
    return ok(f"tasks {set(ids)!r} flagged as revoked")


@handler
def terminate(
    worker: Worker, task_id: str | list[str], signal: str | None = None, **_kw: Any
) -> dict[str, Any]:
    return revoke(worker, task_id, terminate=True, signal=signal)


@handler
def enable_events(worker: Worker, **_kw: Any) -> dict[str, Any]:
    changed = worker.events.set_task_events(True)
    return ok("task events enabled" if changed else "task events already enabled")


@handler
def disable_events(worker: Worker, **_kw: Any) -> dict[str, Any]:
    changed = worker.events.set_task_events(False)
    return ok("task events disabled" if changed else "task events already disabled")


@handler
def heartbeat(worker: Worker, **_kw: Any) -> None:
    worker.events.heartbeat()


@handler
def pool_grow(worker: Worker, n: int = 1, **_kw: Any) -> dict[str, Any]:
    if worker.autoscale is not None:
        return nok("pool_grow is not allowed while autoscale is on; use autoscale MAX MIN")
    worker.pool.grow(int(n))
    worker.options.concurrency = worker.pool.size
    worker.update_qos()
    return ok("pool will grow")


@handler
def pool_shrink(worker: Worker, n: int = 1, **_kw: Any) -> dict[str, Any]:
    if worker.autoscale is not None:
        return nok("pool_shrink is not allowed while autoscale is on; use autoscale MAX MIN")
    worker.pool.shrink(int(n))
    worker.options.concurrency = worker.pool.size
    worker.update_qos()
    return ok("pool will shrink")


@handler
def autoscale(worker: Worker, max: int, min: int, **_kw: Any) -> dict[str, Any]:  # noqa: A002
    if worker.autoscale is None:
        return nok("ValueError('Autoscale not enabled')")
    high, low = int(max), int(min)
    if low < 1 or high < low:
        return nok(f"autoscale needs 1 <= MIN <= MAX, got max={high} min={low}")
    worker.autoscale = (high, low)
    return ok(f"autoscale now max={high} min={low}")


@handler
def rate_limit(
    worker: Worker, task_name: str, rate_limit: str | float | None, **_kw: Any
) -> dict[str, Any]:
    task = worker.app.tasks.get(task_name)
    if task is None:
        return nok("unknown task")
    try:
        bucket = rate_bucket(rate_limit)
    except ConfigError as exc:
        return nok(str(exc))
    task.rate_limit = str(rate_limit) if bucket else None
    if bucket is None:
        worker.rate_buckets.pop(task_name, None)
        return ok("rate limit disabled successfully")
    worker.rate_buckets[task_name] = bucket
    return ok("new rate limit set successfully")


@handler
def time_limit(
    worker: Worker, task_name: str, soft: float | None = None, hard: float | None = None, **_kw: Any
) -> dict[str, Any]:
    task = worker.app.tasks.get(task_name)
    if task is None:
        return nok("unknown task")
    task.soft_time_limit = float(soft) if soft else None
    task.time_limit = float(hard) if hard else None
    return ok("time limits set successfully")


@handler
def add_consumer(
    worker: Worker,
    queue: str,
    exchange: str | None = None,
    exchange_type: str = "direct",
    routing_key: str | None = None,
    **_kw: Any,
) -> dict[str, Any]:
    if not any(existing.name == queue for existing in worker.queues):
        if exchange:
            new = topology.task_queue(
                queue, exchange=exchange, exchange_type=exchange_type, routing_key=routing_key
            )
        else:
            new = worker.app.queue_by_name(queue)
        worker.queues.append(new)
        if worker.task_consumer is not None:
            worker.task_consumer.add_queue(new)
            worker.task_consumer.consume()
    return ok(f"add consumer {queue}")


@handler
def cancel_consumer(worker: Worker, queue: str, **_kw: Any) -> dict[str, Any]:
    worker.queues = [existing for existing in worker.queues if existing.name != queue]
    if worker.task_consumer is not None:
        worker.task_consumer.cancel_by_queue(queue)
    return ok(f"no longer consuming from {queue}")


@handler
def shutdown(worker: Worker, msg: str = "Got shutdown from remote", **_kw: Any) -> None:
    logger.warning("%s", msg)
    worker.request_stop(cold=False, reason="remote shutdown")


#: Autoscale removes a process that has been idle this long.
AUTOSCALE_KEEPALIVE_S = 5.0


def autoscale_step(worker: Worker, now: float) -> bool:
    """Grow the pool while work waits, shrink it when idle; return whether the size changed."""
    high, low = worker.autoscale or (0, 0)
    pool = worker.pool
    if pool.size < low or ((worker.reserved or worker.queued) and pool.size < high):
        pool.grow(1)
    elif pool.size > high or (
        pool.size > low
        and not worker.reserved
        and pool.idle()
        and now - worker.last_busy > AUTOSCALE_KEEPALIVE_S
    ):
        pool.shrink(1)
        worker.last_busy = now
    else:
        return False
    worker.options.concurrency = pool.size
    return True


def listen(worker: Worker, connection: Any) -> Any:
    """Start consuming the worker's pidbox queue on the connection."""
    from . import inspect  # noqa: F401 - registers the read-only commands

    mailbox = make_mailbox(worker.app, clock=worker.clock)(connection)
    node = mailbox.Node(worker.hostname, state=worker, handlers=HANDLERS)
    node.channel = connection.channel()
    return node.listen(callback=lambda body, message: _on_command(worker, node, body, message))


def _on_command(worker: Worker, node: Any, body: Any, message: Any) -> None:
    expires = (message.headers or {}).get("expires")
    if expires and time.time() > expires:
        return  # the client stopped waiting: running it now would surprise its sender
    method = body.get("method") if isinstance(body, dict) else None
    if method in DESTRUCTIVE and not worker.app.conf.worker_allow_destructive_control:
        logger.warning("refused remote %s: worker_allow_destructive_control is off", method)
        if body.get("reply_to"):
            node.reply(
                {
                    worker.hostname: nok(
                        f"{method} refused: worker_allow_destructive_control is off"
                    )
                },
                exchange=body["reply_to"]["exchange"],
                routing_key=body["reply_to"]["routing_key"],
                ticket=body.get("ticket"),
            )
        return
    try:
        node.handle_message(body, message)
    except Exception as exc:
        logger.error("remote control command failed: %r", exc)
