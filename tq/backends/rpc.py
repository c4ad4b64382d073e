"""rpc:// result backend: workers send each state as a message to the client's reply queue.

Chords cannot count through reply queues; rpc_chord.py keeps their bookkeeping in the broker.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from kombu import Consumer, Producer

from .. import states, topology
from ..broker import serialize
from ..errors import BackendError
from .base import Backend, ChordReady, pending_meta, raise_timeout
from .rpc_chord import ChordTokens

if TYPE_CHECKING:
    from ..app import App
    from ..protocol import TaskRequest

#: A non-blocking read takes at most this many waiting replies off the queue.
MAX_DRAIN_PER_READ = 1000
#: How a reply whose first send failed is sent again (kombu's connection.ensure).
REPLY_RETRY_POLICY = {
    "max_retries": 10,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2,
}


class RPCBackend(Backend):
    """Results travel as messages; a result can be read by the client that sent the task only."""

    pushes_results = True

    def __init__(self, app: App, url: str) -> None:
        super().__init__(app, url)
        self._lock = threading.RLock()
        self._pid: int | None = None
        self._results: dict[str, dict[str, Any]] = {}
        self._consumer: Consumer | None = None
        self._connection: Any = None
        self._producer: Producer | None = None
        self._declared = False
        self._chord_tokens = ChordTokens(self)

    # -- worker side -------------------------------------------------------------------------

    def _worker_producer(self) -> Producer:
        if self._producer is None or self._pid != os.getpid():
            self._reset()
            self._producer = Producer(self.app.broker_connection(), auto_declare=False)
        return self._producer

    def write_meta(self, task_id: str, meta: dict[str, Any], request: TaskRequest | None) -> None:
        if request is None or not request.reply_to:
            return  # nobody is listening: Celery sends no reply without reply_to
        producer = self._worker_producer()
        connection = producer.connection
        options = {
            "exchange": topology.DEFAULT_EXCHANGE,
            "routing_key": request.reply_to,
            "correlation_id": request.correlation_id or task_id,
            "serializer": self.serializer,
            "delivery_mode": 2 if self.app.conf.result_persistent else 1,
        }
        try:
            try:
                self._send_reply(producer.channel, meta, options)
            except (
                *connection.recoverable_connection_errors,
                *connection.recoverable_channel_errors,
            ):
                producer.publish(meta, retry=True, retry_policy=REPLY_RETRY_POLICY, **options)
        except producer.connection.connection_errors as exc:
            self._producer = None
            raise BackendError(f"rpc backend: cannot send the result of {task_id}: {exc}") from exc

    @staticmethod
    def _send_reply(channel: Any, meta: dict[str, Any], options: dict[str, Any]) -> None:
        """Publish a reply straight to the channel, as kombu's Producer would write it.

        A client waits for it: kombu's Producer.publish (its retry wrapper, option handling and
        serializer registry) cost ~40 us a reply here; it takes over once a send failed.
        """
        content_type, content_encoding, body = serialize(meta, options["serializer"])
        properties = {
            "correlation_id": options["correlation_id"],
            "delivery_mode": options["delivery_mode"],
        }
        message = channel.prepare_message(body, 0, content_type, content_encoding, {}, properties)
        channel.basic_publish(
            message, exchange=options["exchange"], routing_key=options["routing_key"]
        )

    # -- client side -------------------------------------------------------------------------

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._results = {}
        self._consumer = None
        self._connection = None
        self._producer = None
        self._declared = False

    def _reply_queue(self) -> Any:
        return topology.rpc_reply_queue(self.app.oid, expires_s=self.expires_s)

    def on_task_call(self, producer: Any) -> None:
        # Declare the reply queue before the task is sent, so the first reply is kept.
        if self._pid != os.getpid():
            self._reset()
        if not self._declared:
            self._reply_queue()(producer.channel).declare()
            self._declared = True

    def _ensure_consumer(self) -> Consumer:
        if self._pid != os.getpid():
            self._reset()
        if self._consumer is None:
            self._connection = self.app.broker_connection()
            channel = self._connection.channel()
            self._consumer = Consumer(
                channel,
                queues=[self._reply_queue()],
                callbacks=[self._on_reply],
                accept=self.accept,
                no_ack=True,
                auto_declare=True,
            )
            self._consumer.consume()
            self._declared = True
        return self._consumer

    def _on_reply(self, body: dict[str, Any], message: Any) -> None:
        task_id = message.properties.get("correlation_id") or body.get("task_id")
        if not task_id:
            return
        known = self._results.get(task_id)
        if known is not None and known.get("status") == states.SUCCESS:
            return
        self._results[task_id] = body

    def _drain(self, timeout: float) -> bool:
        try:
            self._connection.drain_events(timeout=timeout)
        except TimeoutError:
            return False
        except self._connection.connection_errors as exc:
            self._consumer = None
            raise BackendError(f"rpc backend: lost the broker connection: {exc}") from exc
        return True

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            self._ensure_consumer()
            for _ in range(MAX_DRAIN_PER_READ):
                if not self._drain(0.0001):
                    break
            return self._results.get(task_id) or pending_meta(task_id)

    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._ensure_consumer()
            while True:
                meta = self._results.get(task_id)
                if meta is not None and meta.get("status") in states.READY_STATES:
                    return meta
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise_timeout()
                self._drain(1.0 if remaining is None else min(1.0, remaining))

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._results.pop(task_id, None)

    # -- chords ------------------------------------------------------------------------------

    def ensure_chords_allowed(self) -> None:
        self._chord_tokens.check_broker()

    def set_chord_size(self, group_id: str, size: int) -> None:
        self._chord_tokens.create(group_id, size)

    def on_chord_part_return(
        self, request: TaskRequest, state: str, result: Any
    ) -> ChordReady | None:
        if not request.group_id:
            return None
        return self._chord_tokens.add_part(request, state, result)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
        self._chord_tokens.close()
        self._reset()
