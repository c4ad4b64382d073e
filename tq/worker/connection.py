"""The worker's broker connection: connect with back-off, know what to reconnect after, requeue orphans."""

from __future__ import annotations

import codecs
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kombu.exceptions import OperationalError

from ..errors import DataDirError
from ..transports import redis_client_identity

if TYPE_CHECKING:
    from kombu import Connection

    from ..app import App

logger = logging.getLogger("tq.worker")

#: Back-off between attempts to reach a broker that is down.
RECONNECT_DELAYS_S = (0.5, 1, 2, 4, 8, 16)
#: Heartbeat checks per negotiated interval (Celery's broker_heartbeat_checkrate).
HEARTBEAT_CHECKS_PER_INTERVAL = 2.0
#: Once shutdown begins, the longest one read or write on the broker's socket may wait.
SHUTDOWN_BROKER_WAIT_S = 2.0


def preload_broker_modules(app: App) -> None:
    """Import the broker's transport and the result backend before the pool forks.

    The pool processes then share those pages with the main process instead of each importing
    them on its first task (redis-py takes ~45 ms to import, on the path of the first task).
    Nothing connects here; a bad URL is reported where it was before, on connect or first use.
    """
    try:
        app.broker_connection().get_transport_cls()
        app.backend  # noqa: B018 - creating it imports its client library
    except Exception as exc:
        logger.debug("could not preload the broker or backend modules: %r", exc)
    if "redis" in sys.modules:
        # What a redis-py client does on its first connection, in every process, besides I/O:
        # look its version up in the package metadata (~3 ms cold) and load the idna codec
        # for getaddrinfo (~3 ms). Done once here, the pool processes inherit both.
        redis_client_identity()
        codecs.lookup("idna")


def keep_heartbeats(hub: Any, connection: Connection) -> None:
    """Send and check AMQP heartbeats from the loop, when the connection negotiated them.

    With broker_heartbeat set, RabbitMQ closes a connection that stays silent for two
    intervals, and an idle worker writes nothing else; a broker that stops answering is
    noticed here too (the check raises, and the worker reconnects).
    """
    interval = connection.get_heartbeat_interval()
    if interval:
        rate = HEARTBEAT_CHECKS_PER_INTERVAL
        hub.call_repeatedly(interval / rate, connection.heartbeat_check, rate)


def bound_broker_waits(connection: Connection | None) -> None:
    """From now on, give up on the broker after SHUTDOWN_BROKER_WAIT_S per read or write.

    A shutdown cancels its consumer and closes its connection, and py-amqp waits for the
    broker to confirm each: a broker that went silent (its host gone, the TCP connection
    still open) would keep the worker from exiting for ever. A healthy broker answers in
    milliseconds. Only AMQP sockets block like this; other transports are left alone.
    """
    established = getattr(connection, "_connection", None)  # None: not connected (no connect here)
    sock = getattr(getattr(established, "transport", None), "sock", None)
    if sock is not None and hasattr(sock, "settimeout"):
        sock.settimeout(SHUTDOWN_BROKER_WAIT_S)


class StoppedWhileConnecting(Exception):
    """A stop was asked for while the worker waited to reach the broker."""


class BrokerUnreachable(Exception):
    """The broker did not answer within the attempts the settings allow."""


def connect_with_retry(
    app: App,
    *,
    first: bool,
    failures: int = 0,
    keep_trying: Callable[[], bool],
    on_wait: Callable[[], None],
) -> Connection:
    """Connect to the broker, retrying with back-off while wanted and allowed.

    Retrying follows Celery's settings: broker_connection_retry_on_startup (first connection)
    or broker_connection_retry (after a loss) switch it off, broker_connection_max_retries
    bounds it (0 or None: for ever). `failures` counts connections lost again right after they
    were made (a queue the broker refuses to declare, say): each counts as a failed attempt,
    so the worker backs off instead of reconnecting in a tight loop. on_wait runs while it
    waits (the worker turns its event loop there: results, time limits and signals are
    handled), each call waiting a moment.
    """
    conf = app.conf
    retry = conf.broker_connection_retry_on_startup if first else conf.broker_connection_retry
    limit = (conf.broker_connection_max_retries or None) if retry else 0
    attempt = failures
    reason = "The connection was lost right after it was made"
    while True:
        if attempt:
            if limit is not None and attempt > limit:
                setting = "broker_connection_max_retries" if retry else (
                    "broker_connection_retry_on_startup" if first else "broker_connection_retry"
                )
                raise BrokerUnreachable(
                    f"{reason} (gave up after {attempt} attempt(s), as {setting} says)"
                )
            delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S)) - 1]
            logger.error("consumer: %s. Trying again in %.1f seconds...", reason, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and keep_trying():
                on_wait()
            if not keep_trying():
                raise StoppedWhileConnecting("stopped while connecting")
        connection = app.broker_connection()
        # At start a data dir the embedded broker cannot use is a mistake to report at once;
        # later it is a passing state (a full disk) that retrying outlasts.
        passing = () if first else (DataDirError,)
        try:
            # One try, no retries: kombu's own retry sleeps (2 s) where nothing else runs.
            connection.ensure_connection(max_retries=0)
            logger.info("Connected to %s", connection.as_uri())
            return connection
        except (OperationalError, OSError, *passing, *connection.connection_errors) as exc:
            connection.release()
            attempt += 1
            reason = f"Cannot connect to {connection.as_uri()}: {exc}"


def recoverable_errors(connection: Any) -> tuple[type[BaseException], ...]:
    """Errors after which the worker reconnects (anything else stops it)."""
    if connection is None:
        return (OSError, OperationalError)
    return (OSError, OperationalError, *connection.connection_errors, *connection.channel_errors)


def restore_orphans(channels: list[Any]) -> None:
    """Requeue what channels of a lost connection still held unacked (Redis, embedded broker).

    AMQP servers do this themselves when a connection dies; kombu's Redis transport would wait
    for the visibility timeout (an hour by default). A channel whose restore fails (the broker
    went away again) stays in `channels`, for the next reconnection.
    """
    failed = []
    while channels:
        channel = channels.pop()
        restore = getattr(getattr(channel, "qos", None), "restore_unacked_once", None)
        if restore is None:
            continue
        try:
            if restore() is False:  # tq's Redis QoS: Redis did not answer, kept for a retry
                failed.append(channel)
        except Exception as exc:  # noqa: BLE001 - tried again after the next reconnection
            logger.warning("could not requeue the messages of the lost connection: %r", exc)
            failed.append(channel)
        drop_sockets(channel)
    channels.extend(failed)


def drop_sockets(channel: Any) -> None:
    """Close a dropped connection's channel's sockets, where its transport can (tq's Redis)."""
    drop = getattr(channel, "drop_sockets", None)
    if drop is not None:
        drop()
