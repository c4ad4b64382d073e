"""Chords over rpc://: the chord's bookkeeping is one token message in a queue of its own.

rpc:// results travel to the client's reply queue, so no worker can read another worker's
header results, and Celery refuses chords there (NotImplementedError). tq keeps the chord's
state in the broker instead. The client declares two durable queues, `tq.chord.<gid>` with
one token message in it (`{size, count, seen}`: a bitmap of the group indexes counted so
far) and `tq.chord.<gid>.parts`. A worker that finishes a header task takes the token with
basic.get (a message has one holder at a time, so this is the lock). Unless its index is
counted already (a redelivered task counts once), it publishes its result to the parts
queue and the token with its bit set, and acks the old token, all in one AMQP transaction.
The worker that counts the last part acks the token without a successor, reads the parts,
deletes both queues and sends the body. A worker that dies holding the token loses its
channel, and RabbitMQ requeues the token.

Why this and not a polling `chord_unlock` task: nothing polls and nothing but the broker
must be shared, the body goes out as soon as the last header task ends, and a worker needs
no extra built-in task. The cost: header tasks that end together queue for the token (a
transaction of a few milliseconds each). It needs AMQP transactions: RabbitMQ only.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from kombu import Exchange, Producer, Queue

from ..errors import BackendError
from .base import ChordPart, ChordReady, join_chord_parts, part_result

if TYPE_CHECKING:
    from ..protocol import TaskRequest
    from .rpc import RPCBackend

logger = logging.getLogger("tq.backends")

CHORD_QUEUE_PREFIX = "tq.chord."
PARTS_QUEUE_SUFFIX = ".parts"
#: How long a finished header task waits for the token before it reports the chord stuck.
TOKEN_WAIT_S = 300.0
#: basic.get retries start fast (the holder keeps the token for milliseconds) and back off.
TOKEN_POLL_START_S = 0.001
TOKEN_POLL_MAX_S = 0.005
#: A part of a header task sent without group_index sorts after every indexed part.
UNINDEXED_PART = 1 << 62


def chord_queue(group_id: str, *, expires_s: float | None, suffix: str = "") -> Queue:
    """Return the queue that holds the token of chord `group_id` (or, with suffix, its parts)."""
    name = CHORD_QUEUE_PREFIX + group_id + suffix
    arguments = {"x-expires": int(expires_s * 1000)} if expires_s else None
    return Queue(
        name,
        Exchange("", "direct"),
        routing_key=name,
        durable=True,
        auto_delete=False,
        queue_arguments=arguments,
    )


class ChordTokens:
    """One process's access to chord tokens, over a connection of its own."""

    def __init__(self, backend: RPCBackend) -> None:
        self.backend = backend
        self._pid: int | None = None
        self._connection: Any = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._channel is None or self._pid != os.getpid():
            self._connection = self.backend.app.broker_connection()
            if self._connection.transport.driver_type != "amqp":
                raise BackendError(
                    "chords with the rpc:// result backend need RabbitMQ (amqp://) as the "
                    "broker; use a redis:// or sqlite:// result backend with other brokers"
                )
            self._channel = self._connection.channel()
            self._channel.tx_select()
            self._pid = os.getpid()
        return self._channel

    def _drop(self) -> None:
        # Closing the channel hands any token we hold back to the queue.
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and self._pid == os.getpid():
            try:
                connection.release()
            except Exception:
                pass

    def _queue(self, group_id: str, suffix: str = "") -> Queue:
        return chord_queue(group_id, expires_s=self.backend.expires_s, suffix=suffix)

    def _publish(self, channel: Any, queue: Queue, token: dict[str, Any]) -> None:
        Producer(channel, auto_declare=False).publish(
            token,
            exchange="",
            routing_key=queue.name,
            serializer=self.backend.serializer,
            delivery_mode=2 if self.backend.app.conf.result_persistent else 1,
        )

    def check_broker(self) -> None:
        """Raise BackendError unless chord tokens can work on this broker."""
        self._open()

    def create(self, group_id: str, size: int) -> None:
        """Declare the chord's queue and put its first token in (the client, before sending)."""
        try:
            channel = self._open()
            queue = self._queue(group_id)(channel)
            for declared in (queue, self._queue(group_id, PARTS_QUEUE_SUFFIX)(channel)):
                declared.declare()
                declared.purge()  # sending a frozen chord again reuses its group id: a new run
            self._publish(channel, queue, {"size": size, "count": 0, "seen": "0", "unindexed": []})
            channel.tx_commit()
        except BackendError:
            raise
        except Exception as exc:
            self._drop()
            raise BackendError(f"rpc backend: cannot start chord {group_id}: {exc}") from exc

    def add_part(self, request: TaskRequest, state: str, result: Any) -> ChordReady | None:
        """Add one header task's part; return ChordReady to the task that completes the chord."""
        group_id = request.group_id
        assert group_id is not None
        index = UNINDEXED_PART if request.group_index is None else request.group_index
        part = [index, request.id, state, part_result(result, state), request.name]
        deadline = time.monotonic() + TOKEN_WAIT_S
        delay = TOKEN_POLL_START_S
        while True:
            try:
                channel = self._open()
                queue = self._queue(group_id)(channel)
                message = queue.get(no_ack=False, accept=self.backend.accept)
                if message is not None:
                    return self._update(channel, queue, message, part)
            except BackendError:
                raise
            except Exception as exc:
                self._drop()
                if getattr(exc, "code", None) == 404:
                    # No queue: the chord finished before this (redelivered) part came back.
                    return None
                logger.warning("chord %s: broker error, retrying: %r", group_id, exc)
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"chord {group_id}: its token did not come back within {TOKEN_WAIT_S:.0f}s; "
                    f"the part of task {request.id} is not counted"
                )
            time.sleep(delay)
            delay = min(TOKEN_POLL_MAX_S, delay * 2)

    def _update(
        self, channel: Any, queue: Queue, message: Any, part: list[Any]
    ) -> ChordReady | None:
        token = message.decode()
        group_id = queue.name[len(CHORD_QUEUE_PREFIX) :]
        parts_queue = self._queue(group_id, PARTS_QUEUE_SUFFIX)(channel)
        index, task_id = part[0], part[1]
        seen = int(token["seen"], 16)
        if index == UNINDEXED_PART:
            counted = task_id in token["unindexed"]
        else:
            counted = bool(seen >> index & 1)
        if not counted:
            self._publish(channel, parts_queue, {"part": part})
            if index == UNINDEXED_PART:
                token["unindexed"].append(task_id)
            else:
                token["seen"] = format(seen | 1 << index, "x")
            token["count"] += 1
        if token["count"] < token["size"]:
            self._publish(channel, queue, token)
            message.ack()
            channel.tx_commit()
            return None
        message.ack()
        channel.tx_commit()
        parts = []
        while True:
            stored = parts_queue.get(no_ack=True, accept=self.backend.accept)
            if stored is None:
                break
            parts.append(stored.decode()["part"])
        for finished in (queue, parts_queue):
            try:
                finished.delete()
            except Exception as exc:  # it expires on its own (x-expires)
                logger.warning("chord queue %s not deleted: %r", finished.name, exc)
                self._drop()
                break
        parts.sort(key=lambda seen_part: seen_part[0])
        return join_chord_parts(
            ChordPart(part_id, part_state, value, name)
            for _index, part_id, part_state, value, name in parts
        )

    def close(self) -> None:
        self._drop()
