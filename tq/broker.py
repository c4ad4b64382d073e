"""The client side of the broker: connections and publishing task messages."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from amqp.channel import Channel as AMQPChannel
from amqp.exceptions import MessageNacked
from kombu import Connection, Exchange, Producer, Queue
from kombu.compression import compress
from kombu.entity import maybe_delivery_mode
from kombu.exceptions import EncodeError, OperationalError
from kombu.serialization import dumps, registry
from kombu.utils import json as kombu_json

from . import topology
from .amqp_writes import one_write_context
from .config import mask_url
from .errors import BrokerUnavailable, ConfigError, PublishError
from .protocol import TaskMessage
from .signing import SigningPolicy, signed_headers, signing_policy

if TYPE_CHECKING:
    from .config import Settings

#: kombu's transport aliases that tq registers itself (the embedded broker).
EMBEDDED_SCHEMES = ("sqlite",)
#: Messages of a batch handed to the transport at once (one Redis pipeline, one SQLite
#: transaction, one AMQP socket write): also the most a connection lost in the middle can
#: make it send twice.
BULK_CHUNK_MESSAGES = 500


logger = logging.getLogger("tq.client")

#: kombu's JSON encoder, made once: kombu's dumps makes one, and a context manager, per message.
_KOMBU_JSON = kombu_json.JSONEncoder()


def serialize(body: Any, serializer: str) -> tuple[str, str, Any]:
    """Return (content type, content encoding, payload) as kombu's serializer registry does."""
    codec = getattr(registry, "_encoders", {}).get(serializer)
    if serializer == "json" and codec is not None and codec.encoder is kombu_json.dumps:
        try:
            return codec.content_type, codec.content_encoding, _KOMBU_JSON.encode(body)
        except Exception as exc:  # as kombu's registry reports it
            raise EncodeError(exc) from exc
    return dumps(body, serializer=serializer)


def default_broker_url(conf: Settings) -> str:
    """Return the configured broker URL, or the embedded broker in the data directory."""
    url = conf.broker_url
    if url:
        return str(url)
    return f"sqlite://{conf.data_dir() / 'broker.db'}"


def make_connection(conf: Settings, url: str | None = None) -> Connection:
    """Return a new (lazy) kombu Connection to the broker."""
    from .transports import BrokerConnection, register_transports, transport_for_url

    url = url or default_broker_url(conf)
    scheme = url.split("://", 1)[0]
    if scheme in EMBEDDED_SCHEMES:
        register_transports()
    transport = transport_for_url(url, conf)
    try:
        return BrokerConnection(
            url,
            transport=transport,
            transport_options=dict(conf.broker_transport_options or {}),
            connect_timeout=conf.broker_connection_timeout,
            heartbeat=conf.broker_heartbeat or 0,
        )
    except (KeyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use broker URL {mask_url(url)!r}: {exc}") from None


def _drop_connection(connection: Connection) -> None:
    """Close the connection without talking to the broker; the next use connects again."""
    try:
        connection.collect()
    except Exception:  # noqa: BLE001 - the error being handled is the one to report
        logger.debug("closing a failed broker connection failed", exc_info=True)


class Outgoing(NamedTuple):
    """A task message encoded for the wire, with where it goes and what runs around it."""

    body: bytes | str
    content_type: str
    content_encoding: str
    headers: dict[str, Any]
    #: AMQP properties but priority: delivery_mode, correlation_id, reply_to, expiration.
    properties: dict[str, Any]
    priority: int
    exchange: str
    routing_key: str
    queue: Queue
    retry: bool
    retry_policy: dict[str, Any]
    before_publish: Callable[[Producer], Any] | None
    after_publish: Callable[[], Any] | None


class _Sent:
    """How many messages of a send are known to be with the broker (a retry resumes there)."""

    def __init__(self) -> None:
        self.count = 0


class Publisher:
    """Publishes task messages; one connection and producer per thread and process.

    A message is encoded here and handed to the channel's basic_publish: kombu's
    Producer.publish would wrap every send in connection.ensure and work out its options
    again; here connection.ensure only takes over once a send has failed. Inside batch(),
    messages are encoded at once and sent together when the block ends, in chunks of
    BULK_CHUNK_MESSAGES: one Redis pipeline, one SQLite transaction or one AMQP socket write
    (amqp_writes.py) each.
    """

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self._local = threading.local()
        self._signing: SigningPolicy | None = None

    def _producer(self) -> tuple[Producer, set[str]]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid = os.getpid()
            local.connection = make_connection(self.conf)
            local.producer = None
            local.declared = set()
            local.batch = None
        if local.producer is None:
            local.producer = Producer(local.connection, auto_declare=False)
        return local.producer, local.declared

    @property
    def connection(self) -> Connection:
        """The calling thread's publishing connection."""
        self._producer()
        return self._local.connection

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Keep what this thread publishes in the block; send it all when the block ends.

        Every message is encoded when published (so a bad one fails there); an exception out
        of the block sends nothing of it. A batch inside a batch joins the outer one.
        """
        self._producer()
        local = self._local
        outer = local.batch
        pending: list[Outgoing] = [] if outer is None else outer
        mark = len(pending)
        local.batch = pending
        try:
            yield
        except BaseException:
            del pending[mark:]
            raise
        finally:
            local.batch = outer
        if outer is None and pending:
            self._send(pending)

    def publish(
        self,
        message: TaskMessage,
        *,
        queue: Queue,
        exchange: str | Exchange | None = None,
        routing_key: str | None = None,
        retry: bool = True,
        retry_policy: dict[str, Any] | None = None,
        before_publish: Callable[[Producer], Any] | None = None,
        after_publish: Callable[[], Any] | None = None,
    ) -> None:
        """Publish one task message to its queue, declaring the queue the first time.

        before_publish(producer) runs just before the message is sent, after_publish() once
        it is (inside batch(): when the batch is sent).
        """
        conf = self.conf
        outgoing = self._encode(
            message,
            queue=queue,
            exchange=exchange,
            routing_key=routing_key,
            retry=retry,
            retry_policy=retry_policy or conf.task_publish_retry_policy,
            before_publish=before_publish,
            after_publish=after_publish,
        )
        pending = getattr(self._local, "batch", None)
        if pending is not None and getattr(self._local, "pid", None) == os.getpid():
            pending.append(outgoing)
        else:
            self._send([outgoing])

    def _encode(
        self,
        message: TaskMessage,
        *,
        queue: Queue,
        exchange: str | Exchange | None,
        routing_key: str | None,
        retry: bool,
        retry_policy: dict[str, Any],
        before_publish: Callable[[Producer], Any] | None,
        after_publish: Callable[[], Any] | None,
    ) -> Outgoing:
        """Serialise (and sign, and compress) a message and work out where it goes."""
        conf = self.conf
        if exchange is None and routing_key is None and queue.exchange.type == "direct":
            # Celery publishes to the nameless exchange with the queue as key.
            target: str | Exchange = topology.DEFAULT_EXCHANGE
            key = queue.name
        else:
            target = exchange if exchange is not None else queue.exchange
            key = routing_key or queue.routing_key
        delivery_mode = conf.task_default_delivery_mode
        if isinstance(target, Exchange):
            delivery_mode = delivery_mode or target.delivery_mode
            target = target.name
        properties = dict(message.properties)
        priority = properties.pop("priority", 0)
        properties["delivery_mode"] = maybe_delivery_mode(delivery_mode)
        if self._signing is None:
            self._signing = signing_policy(conf)
        content_type, content_encoding, body = serialize(list(message.body), conf.task_serializer)
        headers = message.headers
        if self._signing.enabled:
            headers = signed_headers(
                self._signing,
                headers,
                body=body,
                content_type=content_type,
                content_encoding=content_encoding,
            )
            if isinstance(body, str):
                body = body.encode(content_encoding)
        compression = conf.task_compression
        if compression:
            headers = dict(headers)
            body, headers["compression"] = compress(body, compression)
        return Outgoing(
            body, content_type, content_encoding, headers, properties, priority, target, key,
            queue, retry, retry_policy, before_publish, after_publish,
        )  # fmt: skip

    def _send(self, messages: list[Outgoing]) -> None:
        """Send the messages in order; on a lost connection, retry from the first unsent one."""
        producer, declared = self._producer()
        connection = producer.connection
        sent = _Sent()
        try:
            try:
                if messages[0].retry:
                    # As kombu's Producer does: the policy also bounds the first connect.
                    connection.transport_options.update(messages[0].retry_policy)
                self._send_rest(producer, declared, messages, sent)
            except (
                *connection.recoverable_connection_errors,
                *connection.recoverable_channel_errors,
            ) as exc:
                if isinstance(exc, connection.recoverable_connection_errors):
                    # kombu's ensure() tries once more on this connection before it connects
                    # again: after a write that failed part-way, that retry's frames would
                    # follow half a frame, and the broker could take the two for one message.
                    # A new producer connects (under the same policy) when it is first used.
                    _drop_connection(connection)
                    declared.clear()
                    producer = self._local.producer = Producer(connection, auto_declare=False)
                failed = messages[min(sent.count, len(messages) - 1)]
                if not failed.retry:
                    raise
                retrying = connection.ensure(producer, self._send_rest, **failed.retry_policy)
                retrying(producer, declared, messages, sent)
        except (OperationalError, *connection.connection_errors) as exc:
            self._local.producer = None
            _drop_connection(connection)  # what the last attempt left half-written goes too
            declared.clear()
            unsent = f" ({sent.count} of {len(messages)} sent)" if len(messages) > 1 else ""
            raise BrokerUnavailable(
                f"cannot publish to broker {mask_url(connection.as_uri())}{unsent}: {exc}"
            ) from exc
        for outgoing in messages:
            if outgoing.after_publish is not None:
                outgoing.after_publish()

    def _send_rest(
        self, producer: Producer, declared: set[str], messages: list[Outgoing], sent: _Sent
    ) -> None:
        """Send messages[sent.count:], counting each once the transport has it."""
        channel = producer.channel
        in_bulk = None
        if len(messages) - sent.count > 1:
            in_bulk = getattr(channel, "publishing_in_bulk", None) or one_write_context(channel)
        if in_bulk is None:  # one message (or a channel that cannot hold them): each at once
            for outgoing in messages[sent.count :]:
                self._prepare_target(producer, declared, outgoing)
                self._publish(channel, outgoing)
                sent.count += 1
            return
        while sent.count < len(messages):
            chunk = messages[sent.count : sent.count + BULK_CHUNK_MESSAGES]
            # Hooks and declarations first: they may wait for the broker, which a held
            # publish would keep from ever hearing them.
            for outgoing in chunk:
                self._prepare_target(producer, declared, outgoing)
            with in_bulk():
                for outgoing in chunk:
                    self._publish(channel, outgoing)
            sent.count += len(chunk)

    @staticmethod
    def _prepare_target(producer: Producer, declared: set[str], outgoing: Outgoing) -> None:
        """Run the message's before_publish hook; declare its queue the first time."""
        if outgoing.before_publish is not None:
            outgoing.before_publish(producer)
        queue = outgoing.queue
        if queue.name not in declared:
            producer.maybe_declare(queue)
            declared.add(queue.name)

    @staticmethod
    def _publish(channel: Any, outgoing: Outgoing) -> None:
        # prepare_message may add to the properties it is given: a copy, for a retry's sake.
        prepared = channel.prepare_message(
            outgoing.body,
            outgoing.priority,
            outgoing.content_type,
            outgoing.content_encoding,
            outgoing.headers,
            dict(outgoing.properties),
        )
        returned = _returns_of(channel)
        if returned is None:  # not AMQP: every transport of tq's routes or raises itself
            channel.basic_publish(
                prepared, exchange=outgoing.exchange, routing_key=outgoing.routing_key
            )
            return
        try:
            channel.basic_publish(
                prepared, exchange=outgoing.exchange, routing_key=outgoing.routing_key,
                mandatory=True,
            )  # fmt: skip
        except MessageNacked:
            raise PublishError(
                f"task {_task_label(outgoing.headers)} was not queued: RabbitMQ refused it "
                f"(routing key {outgoing.routing_key!r}; a queue at its max-length with "
                "overflow reject-publish, or a broker out of resources); retry later"
            ) from None
        # With publisher confirms a return comes before the broker's ack, so it is here now;
        # without, it comes whenever the connection is read next, and is only logged.
        if returned and getattr(channel.connection, "confirm_publish", False):
            mine = [one for one in returned if one[0].get("id") == outgoing.headers.get("id")]
            returned.clear()
            if mine:
                raise PublishError(_unrouted(*mine[0]))
        returned.clear()

    def close(self) -> None:
        """Close the calling thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.release()
        self._local.__dict__.clear()


ReturnedMessage = tuple[dict[str, Any], str, str, str]


def _returns_of(channel: Any) -> list[ReturnedMessage] | None:
    """The list an AMQP channel's unroutable task messages go to, set up the first time
    (mandatory publishes come back in basic.return); None on other transports."""
    returned: list[ReturnedMessage] | None = getattr(channel, "tq_returned", None)
    if returned is not None:
        return returned
    if not isinstance(channel, AMQPChannel):
        return None
    returned = channel.tq_returned = []

    def on_return(exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        properties = getattr(message, "properties", None) or {}
        headers = properties.get("application_headers") or {}
        reason = str(getattr(exc, "reply_text", "") or exc)
        returned.append((headers, exchange, routing_key, reason))
        if not getattr(channel.connection, "confirm_publish", False):  # else delay() raises
            logger.error("%s", _unrouted(headers, exchange, routing_key, reason))

    channel.events["basic_return"].add(on_return)
    return returned


def _task_label(headers: dict[str, Any]) -> str:
    return f"{headers.get('task', '?')}[{headers.get('id', '?')}]"


def _unrouted(headers: dict[str, Any], exchange: str, routing_key: str, reason: str) -> str:
    where = f"exchange {exchange!r}" if exchange else "the default exchange"
    return (
        f"task {_task_label(headers)} was not queued: RabbitMQ returned it ({reason}), no queue "
        f"is bound to routing key {routing_key!r} on {where}; declare the queue or route the "
        "task to one that exists"
    )
