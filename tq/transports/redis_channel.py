"""tq's Redis channel: kombu's keys and wire format, a few round trips instead of one per step.

What changes against kombu's Redis channel (everything else is inherited):

- consuming: one script call (redis_scripts.CLAIM_SCRIPT) acks what finished since the last
  call and claims up to the free prefetch slots, recording them as unacked in the same atomic
  step. The call is sent on the hub-registered connection and its reply read when the socket
  is readable, so the hub loop never waits for Redis. When the queues are empty the script
  leaves Redis tracking them (``CLIENT TRACKING``): the next push to any of them makes Redis
  send an invalidation on the same connection, which starts the next claim (redis_wakeups).
  Nothing is popped by a blocking command, so no message can be lost with a reply on the wire.
- acks: batched into the next script call (see redis_qos.QoS).
- publishing: see redis_routing (one client per channel, cached bindings).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.utils.encoding import bytes_to_str
from kombu.utils.scheduling import priority_cycle
from redis.exceptions import NoScriptError, ResponseError

from ..jsontext import loads
from .redis_qos import QoS
from .redis_scripts import (
    ACKS_PER_CALL_MAX,
    CLAIM_SCRIPT,
    ClaimCall,
    claim_args,
    claim_keys,
    pack_command,
    parse_claim_reply,
)
from .redis_timing import CallTiming
from .redis_wakeups import WakingChannel

if TYPE_CHECKING:
    from .redis import Transport

logger = logging.getLogger("tq.transports.redis")

#: Messages one claim takes for a consumer without a prefetch limit.
CLAIM_BATCH_MAX = 16
#: The longest one Redis command waits for its reply (transport option socket_timeout; kombu's
#: default is none). A Redis that went silent (its host gone, the TCP connection open) would
#: otherwise block the worker's loop for ever in the next command it sends.
SOCKET_TIMEOUT_S = 10.0
CLAIM_SCRIPT_SHA = hashlib.sha1(CLAIM_SCRIPT.encode()).hexdigest()


class Channel(WakingChannel):
    """kombu's Redis channel with batched claims and acks."""

    QoS = QoS
    connection: Transport
    socket_timeout: Any = SOCKET_TIMEOUT_S
    # kombu's class attributes are typed by their defaults (False, None).
    _in_poll: Any
    _brpop_sent_at: Any
    _no_ack_queues: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pending_acks: list[str] = []
        self._in_flight: ClaimCall | None = None
        self._lost_claims: list[str] = []
        self._timing = CallTiming()
        self._tracked_sock: Any = None
        self._use_eval = False
        self._last_score = 0.0
        self._no_ack_queues = set()
        super().__init__(*args, **kwargs)

    def answers(self, timeout_s: float) -> bool:
        """Whether Redis answers a PING within timeout_s, on a connection of its own."""
        import redis

        params = dict(self._connparams(), socket_timeout=timeout_s)
        params["socket_connect_timeout"] = timeout_s
        pool = redis.ConnectionPool(**params)
        try:
            return bool(redis.Redis(connection_pool=pool).ping())
        except (*self.connection_errors, OSError):
            return False
        finally:
            pool.disconnect()

    # -- claiming ----------------------------------------------------------------------------

    def _next_score(self) -> str:
        # The score doubles as the claim's identity (recover_lost_claims): never repeat one.
        score = max(time.time(), self._last_score + 1e-6)
        self._last_score = score
        return repr(score)

    def _free_slots(self) -> int:
        qos = self.qos
        if not qos.can_consume():
            return 0
        if not qos.prefetch_count:
            return CLAIM_BATCH_MAX
        return qos.prefetch_count - (len(qos._delivered) - len(qos._dirty))

    def hold_wait_s(self) -> float | None:
        """Seconds until held-back acks or a held-back claim fall due; None if none is held."""
        due = self._timing.hold_until(
            pending_acks=bool(self._pending_acks),
            consuming=bool(self.active_queues),
            free=self._free_slots(),
            prefetch=self.qos.prefetch_count,
        )
        return None if due is None else max(0.0, due - time.monotonic())

    def _wake_when_due(self) -> None:
        # Called from hub callbacks: the hub's next sleep is worked out before its tick.
        wait_s = self.hold_wait_s()
        if wait_s:
            self.connection.wake_at(time.monotonic() + wait_s)

    @property
    def idle_recheck_s(self) -> float:
        """How long an idle consumer waits before it claims again without a wake-up."""
        return self._timing.idle_recheck_s

    def _queue_keys(self, queues: list[str]) -> list[str]:
        return [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]

    def _records(self, queue: str) -> bool:
        return bool(self.ack_emulation) and queue not in self._no_ack_queues

    def _make_call(self, *, acks: list[str], queues: list[str], count: int) -> ClaimCall:
        # kombu's priority and sorted cycles keep their order; round_robin rotates.
        rotate = not isinstance(self._queue_cycle, priority_cycle)
        return ClaimCall(
            acks=acks, queues=queues, count=count, score=self._next_score(), rotate=rotate
        )

    def _script_command(self, call: ClaimCall) -> list[Any]:
        keys = claim_keys(
            prefix=self.global_keyprefix,
            unacked=self.unacked_key,
            index=self.unacked_index_key,
            queue_keys=self._queue_keys(list(call.queues)) if call.claims else [],
        )
        args = claim_args(call, [self._records(queue) for queue in call.queues])
        verb, script = ("EVAL", CLAIM_SCRIPT) if self._use_eval else ("EVALSHA", CLAIM_SCRIPT_SHA)
        return [verb, script, len(keys), *keys, *args]

    @property
    def abandoned(self) -> bool:
        """Whether Redis was found silent at shutdown (Transport.abandon): no more calls."""
        return bool(getattr(getattr(self.connection, "cycle", None), "abandoned", False))

    def _brpop_start(self, timeout: Any = None) -> None:
        """Send the next script call on the consuming connection if there is work for it."""
        if self.abandoned:
            return
        if self._in_flight is not None:  # its connection was dropped: its acks go again
            self._on_call_lost()
        if self._lost_claims:
            self.recover_lost_claims()
        free = self._free_slots()
        timing, now, consuming = self._timing, time.monotonic(), bool(self.active_queues)
        claim = consuming and timing.claim_due(free=free, prefetch=self.qos.prefetch_count, now=now)
        if not claim and not (self._pending_acks and timing.acks_due(consuming=consuming, now=now)):
            return
        queues = list(self._queue_cycle.consume(len(self.active_queues))) if free > 0 else []
        acks = self._pending_acks[:ACKS_PER_CALL_MAX]
        del self._pending_acks[: len(acks)]
        call = self._make_call(acks=acks, queues=queues, count=max(free, 0))
        connection = self.client.connection
        try:
            self._enable_tracking(connection)
            connection.send_packed_command(
                pack_command(self._script_command(call)), check_health=False
            )
        except self.connection_errors:
            self._pending_acks[:0] = acks
            raise
        self._in_flight = call
        self._in_poll = connection
        self._brpop_sent_at = time.monotonic()
        if call.claims:
            timing.woken = False
            timing.last_claim_at = self._brpop_sent_at

    def _brpop_read(self, **options: Any) -> bool:
        """Read what the consuming connection has: the reply to our call, or wake-ups."""
        connection = self.client.connection
        call = self._in_flight
        try:
            if call is None:
                self._read_pushes(connection)
                self._wake_when_due()
                raise Empty()
            reply = self._read_reply(connection, call)
        finally:
            self._flush_brpop_reauth()
        pairs = parse_claim_reply(reply, call.queues)
        if call.claims:
            self._timing.idle_since = time.monotonic() if len(pairs) < call.count else None
        try:
            self._deliver_claimed(pairs)
        finally:
            # Wake-ups behind the reply; if Redis is gone by now, what was delivered is held.
            self._read_pushes(connection, buffered_only=True)
        self._wake_when_due()
        if not pairs:
            raise Empty()
        return True

    def _read_reply(self, connection: Any, call: ClaimCall) -> Any:
        try:
            reply = connection.read_response()
        except NoScriptError:
            # Redis restarted or flushed its scripts: send the source, which caches it.
            self._use_eval = True
            try:
                connection.send_command(*self._script_command(call), check_health=False)
            except self.connection_errors:
                self._on_call_lost()
                raise
            raise Empty() from None
        except ResponseError:
            # Refused (out of memory) or failed: acks go again; a claim may have run.
            self._on_call_lost()
            raise
        except self.connection_errors:
            self._on_call_lost()
            connection.disconnect()
            raise
        self._in_flight = None
        self._in_poll = None
        self._use_eval = False  # the source was cached with that call: back to EVALSHA
        return reply

    def _on_call_lost(self) -> None:
        """The connection died with our call unanswered: its acks go again, its claim back."""
        call, self._in_flight = self._in_flight, None
        self._in_poll = None
        self._tracked_sock = None
        if call is None:
            return
        self._pending_acks[:0] = call.acks
        if call.claims:
            self._lost_claims.append(call.score)

    def _on_connection_disconnect(self, connection: Any) -> None:
        # kombu drops a silent consuming connection (its health check): a call on it is lost.
        if self._in_poll is connection:
            self._on_call_lost()
        super()._on_connection_disconnect(connection)

    def drop_sockets(self) -> None:
        """Close this channel's sockets to Redis now: its connection was dropped, and a socket
        whose peer is gone would stay open (CLOSE_WAIT) until the garbage collector found the
        channel. A command it still sends (the restore of what it held) opens a new one."""
        for pool in (self._pool, self._async_pool):  # kept: making one anew needs the connection
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.disconnect()

    def abandon_call(self) -> None:
        """Give up on the reply to our call (its connection is gone): acks again, claim back."""
        if self._in_flight is not None:
            self._on_call_lost()

    def _deliver_claimed(self, pairs: list[tuple[str, bytes]]) -> None:
        callbacks: dict[str, Any] = self.connection._callbacks or {}
        for position, (queue, raw) in enumerate(pairs):
            self._queue_cycle.rotate(queue)
            try:
                payload = loads(bytes_to_str(raw))
                if queue not in callbacks:
                    self._give_back(queue, raw, payload)
                    continue
                self.connection._deliver(payload, queue)
            except Exception:
                # Whatever a callback raised, the rest of the batch must not stay claimed.
                for later_queue, later_raw in pairs[position + 1 :]:
                    self._give_back(later_queue, later_raw, loads(bytes_to_str(later_raw)))
                raise

    def _give_back(self, queue: str, raw: bytes, payload: dict[str, Any]) -> None:
        """Return a claimed message nobody here consumes any more to the head of its queue."""
        if self._records(queue):
            self.qos.restore_by_tag(payload["properties"]["delivery_tag"])
            return
        key = self._q_for_pri(queue, self._get_message_priority(payload, reverse=False))
        with self.conn_or_acquire() as client:
            client.rpush(key, raw)

    def claim_now(self, queue: str, *, record: bool) -> dict[str, Any] | None:
        """Claim one message of queue synchronously (basic_get); None if it is empty."""
        call = self._make_call(acks=[], queues=[queue], count=1)
        keys = claim_keys(
            prefix=self.global_keyprefix,
            unacked=self.unacked_key,
            index=self.unacked_index_key,
            queue_keys=self._queue_keys([queue]),
        )
        script = self._clients.get("script")
        if script is None:
            script = self._clients["script"] = self._cached_client("raw").register_script(
                CLAIM_SCRIPT
            )
        reply = script(keys=keys, args=claim_args(call, [record and bool(self.ack_emulation)]))
        pairs = parse_claim_reply(reply, [queue])
        return loads(bytes_to_str(pairs[0][1])) if pairs else None

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Claim the head message of queue (recorded as unacked unless no_ack), or None."""
        payload = self.claim_now(queue, record=not no_ack)
        if payload is None:
            return None
        message = self.Message(payload, channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: Any = None) -> dict[str, Any]:
        payload = self.claim_now(queue, record=True)
        if payload is None:
            raise Empty()
        return payload

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        """Consume from queue; a no_ack consumer's claims are not recorded as unacked."""
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        self._timing.idle_since = None  # a new queue may hold messages: claim at once
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    # -- acks --------------------------------------------------------------------------------

    def forget(self, tags: list[str]) -> None:
        """Remove acked tags from the unacked keys: with the next call under a hub, else now."""
        first = not self._pending_acks
        if first:
            self._timing.acks_since = time.monotonic()
        self._pending_acks.extend(tags)
        if self.connection is None:  # closed with its connection: a restore writes them first
            return
        if not self.connection.hub_driven:
            self.flush_acks()
        elif first and self._in_flight is None:  # else the call's reply looks again
            self._wake_when_due()

    def flush_acks(self) -> None:
        """Write every pending ack now, synchronously."""
        while self._pending_acks:
            acks = self._pending_acks[:ACKS_PER_CALL_MAX]
            with self.conn_or_acquire() as client:
                with client.pipeline() as pipe:
                    pipe.zrem(self.unacked_index_key, *acks)
                    pipe.hdel(self.unacked_key, *acks)
                    pipe.execute()
            del self._pending_acks[: len(acks)]

    def holds_unacked_work(self) -> bool:
        """Whether acks or a lost claim wait to be written."""
        return bool(self._pending_acks or self._lost_claims)

    def recover_lost_claims(self) -> None:
        """Requeue the messages of claims whose reply never came (found by their score)."""
        while self._lost_claims:
            score = self._lost_claims[0]
            client = self._cached_client("raw")
            index = self.global_keyprefix + self.unacked_index_key
            tags = client.zrange(index, score, score, byscore=True)
            for tag in tags:
                self.qos.restore_by_tag(bytes_to_str(tag))
            self._lost_claims.pop(0)

    def close(self) -> None:
        """Read a reply still on the wire, write pending acks, then close as kombu does (none
        of it once Redis was found silent: each would wait socket_timeout for nothing)."""
        if not self.abandoned:
            if self._in_flight is not None and not self.closed:
                self._finish_call_on_close()
            try:
                self.flush_acks()
            except self.connection_errors as exc:
                logger.warning(
                    "could not write %d ack(s) on close: %r", len(self._pending_acks), exc
                )
        else:  # nor kombu's last read and deletes of auto-delete fanout queues (bindings expire)
            self._in_poll = None
            self.auto_delete_queues.clear()
        super().close()
        self._disconnect_pools()  # the restore on close opened a pool again

    def _finish_call_on_close(self) -> None:
        # Claimed messages are held, not delivered: closing restores them right after.
        connection = self.client.connection
        call = self._in_flight
        assert call is not None
        try:
            reply = connection.read_response()
        except self.connection_errors:
            self._on_call_lost()
            return
        except NoScriptError:
            reply = []  # the script did not run: nothing was acked or claimed
            self._pending_acks[:0] = call.acks
        self._in_flight = None
        self._in_poll = None
        for queue, raw in parse_claim_reply(reply, call.queues):
            payload = loads(bytes_to_str(raw))
            if self._records(queue):
                message = self.Message(payload, channel=self)
                self.qos.append(message, message.delivery_tag)
            else:
                self._give_back(queue, raw, payload)

