"""The client side of the broker: connections and publishing task messages."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from kombu import Connection, Exchange, Producer, Queue
from kombu.exceptions import OperationalError
from kombu.serialization import dumps

from . import topology
from .config import mask_url
from .errors import BrokerUnavailable, ConfigError
from .protocol import TaskMessage
from .signing import SigningPolicy, signed_headers, signing_policy

if TYPE_CHECKING:
    from .config import Settings

#: kombu's transport aliases that tq registers itself (the embedded broker).
EMBEDDED_SCHEMES = ("sqlite",)


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


class Publisher:
    """Publishes task messages; one connection and producer per thread and process."""

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
        if local.producer is None:
            local.producer = Producer(local.connection, auto_declare=False)
        return local.producer, local.declared

    @property
    def connection(self) -> Connection:
        """The calling thread's publishing connection."""
        self._producer()
        return self._local.connection

    def publish(
        self,
        message: TaskMessage,
        *,
        queue: Queue,
        exchange: str | Exchange | None = None,
        routing_key: str | None = None,
        retry: bool = True,
        retry_policy: dict[str, Any] | None = None,
        before_publish: Any = None,
    ) -> None:
        """Publish one task message to its queue, declaring the queue the first time."""
        producer, declared = self._producer()
        conf = self.conf
        declare = [] if queue.name in declared else [queue]
        if exchange is None and routing_key is None and queue.exchange.type == "direct":
            # Celery publishes to the nameless exchange with the queue as key.
            exchange_name: str | Exchange = topology.DEFAULT_EXCHANGE
            key = queue.name
        else:
            exchange_name = exchange if exchange is not None else queue.exchange
            key = routing_key or queue.routing_key
        properties = dict(message.properties)
        expiration_ms = properties.pop("expiration", None)
        if before_publish is not None:
            before_publish(producer)
        body, headers, encoding = self._encode(message)
        try:
            producer.publish(
                body,
                exchange=exchange_name,
                routing_key=key,
                headers=headers,
                declare=declare,
                **encoding,
                compression=conf.task_compression,
                delivery_mode=conf.task_default_delivery_mode,
                expiration=int(expiration_ms) / 1000.0 if expiration_ms is not None else None,
                retry=retry,
                retry_policy=retry_policy or conf.task_publish_retry_policy,
                **properties,
            )
        except (OperationalError, *producer.connection.connection_errors) as exc:
            self._local.producer = None
            raise BrokerUnavailable(
                f"cannot publish to broker {mask_url(producer.connection.as_uri())}: {exc}"
            ) from exc
        declared.add(queue.name)

    def _encode(self, message: TaskMessage) -> tuple[Any, dict[str, Any], dict[str, str]]:
        """The body, headers and encoding options to publish: serialised here to sign it."""
        if self._signing is None:
            self._signing = signing_policy(self.conf)
        serializer = self.conf.task_serializer
        if not self._signing.enabled:
            return list(message.body), message.headers, {"serializer": serializer}
        content_type, content_encoding, payload = dumps(list(message.body), serializer=serializer)
        headers = signed_headers(
            self._signing,
            message.headers,
            body=payload,
            content_type=content_type,
            content_encoding=content_encoding,
        )
        return (
            payload,
            headers,
            {"content_type": content_type, "content_encoding": content_encoding},
        )

    def close(self) -> None:
        """Close the calling thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.release()
        self._local.__dict__.clear()
