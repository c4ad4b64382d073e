"""tq's Redis transport: kombu's Redis transport with fewer round trips, on the same keys.

tq apps use it for ``redis://`` and ``rediss://`` broker URLs unless ``broker_redis_transport``
is ``"kombu"`` (tq.transports.transport_for_url). It keeps kombu's key layout and message
format exactly (queue lists and their priority sub-keys, the ``unacked`` hash and
``unacked_index`` zset, ``unacked_mutex``, ``_kombu.binding.*`` sets, fanout over PUBLISH,
``global_keyprefix``) so Celery clients and workers share a Redis with tq processes: see
redis_channel for what it does differently and why. It needs Redis 6 or later (RESP3; where
an ACL refuses ``CLIENT TRACKING``, idle consumers poll every 50 ms instead); older servers:
``broker_redis_transport="kombu"``.

Transport options are kombu's (``visibility_timeout`` also sets how often a worker renews the
claims of the messages it holds: every quarter of it), plus ``binding_cache_ttl`` (seconds a
direct exchange's bindings are reused before reading them again; 0 reads them on every publish).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.transport import redis as kombu_redis

from . import LEASE_RENEWALS_PER_TIMEOUT
from .redis_channel import Channel

logger = logging.getLogger("tq.transports.redis")


class Poller(kombu_redis.MultiChannelPoller):
    """kombu's poller, aware that an idle tq channel waits for pushes, not for a BRPOP reply."""

    #: Set by Transport.abandon: Redis does not answer, so the periodic checks would only wait.
    abandoned = False

    # kombu's periodic work on the hub, each a Redis command that would wait socket_timeout.

    def maybe_restore_messages(self) -> Any:
        """Requeue expired claims, unless abandoned."""
        return None if self.abandoned else super().maybe_restore_messages()

    def maybe_refresh_binding_expiry(self) -> Any:
        """Refresh the bindings' expiry, unless abandoned."""
        return None if self.abandoned else super().maybe_refresh_binding_expiry()

    def maybe_check_subclient_health(self) -> Any:
        """Ping the subscriber connections, unless abandoned."""
        return None if self.abandoned else super().maybe_check_subclient_health()

    def maybe_check_brpop_health(self) -> Any:
        """Check the consuming connection, unless abandoned."""
        return None if self.abandoned else super().maybe_check_brpop_health()

    def maybe_reauth(self) -> Any:
        """Renew credentials, unless abandoned."""
        return None if self.abandoned else super().maybe_reauth()

    def on_poll_start(self) -> None:
        """Register consumers as kombu does, and give waiting acks a call of their own (none
        once abandoned: registering reconnects, and a silent Redis never answers)."""
        if self.abandoned:
            return
        super().on_poll_start()
        for channel in self._channels:
            if (
                isinstance(channel, Channel)
                and channel.holds_unacked_work()
                and not channel._in_poll
                and not (channel.active_queues and channel.qos.can_consume())
            ):
                self._register_BRPOP(channel)

    def on_readable(self, fileno: int) -> Any:
        """Let a tq channel read its socket whatever its prefetch (kombu would disconnect it)."""
        chan_type = self._fd_to_chan.get(fileno)
        if (
            chan_type is not None
            and chan_type[1] == "BRPOP"
            and isinstance(chan_type[0], Channel)
            and fileno not in self._paused_brpop
        ):
            return chan_type[0]._brpop_read()
        return super().on_readable(fileno)

    def get(self, callback: Any, timeout: float | None = None) -> Any:
        """Poll as kombu does, waking a consumer in time for its periodic or held-back call."""
        waits = []
        for channel in self._channels:
            if isinstance(channel, Channel):
                held_s = channel.hold_wait_s()
                waits.append(channel.idle_recheck_s if held_s is None else held_s)
        if waits:
            timeout = min(waits) if timeout is None else min(timeout, *waits)
        return super().get(callback, timeout=timeout)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with tq's channel and poller."""

    Channel = Channel
    cycle: Any
    #: Whether a kombu Hub drives this connection (then acks wait for its next tick).
    hub_driven = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = Poller()
        self._loop: Any = None
        self._ticker: Any = None
        self._renewer: Any = None
        self._wake_due: float | None = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Consume under a kombu Hub: acks are written once per loop iteration from now on, and
        the leases of held messages are renewed (redis_qos)."""
        self.hub_driven = True
        self._loop = loop
        super().register_with_event_loop(connection, loop)
        timeout = connection.client.transport_options.get(
            "visibility_timeout", Channel.visibility_timeout
        )
        self._renewer = loop.call_repeatedly(
            float(timeout) / LEASE_RENEWALS_PER_TIMEOUT, self.renew_leases
        )

    def abandon(self) -> None:
        """Redis stopped answering: do nothing more that waits for it (periodic restores and
        health checks, lease renewals, the restore when a channel closes). The messages this
        connection holds stay unacked in Redis for other workers to requeue."""
        self.cycle.abandoned = True
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        channels: list[Any] = list(self.channels or ())
        for channel in channels:
            channel.do_restore = False
            # A reply half read when Redis went silent would hold the loop for socket_timeout:
            # with the sockets closed, a read fails at once (the worker goes on without Redis).
            channel.drop_sockets()

    def renew_leases(self) -> None:
        """Renew the leases of every tq channel's held messages (see redis_qos)."""
        for channel in list(self.cycle._channels):
            if not isinstance(channel, Channel) or channel.closed:
                continue
            try:
                channel.qos.renew_leases()
            except Exception as exc:  # never the loop's end: the next renewal tries again
                # A lost Redis is noticed by the worker-heartbeat probe, which reconnects.
                logger.warning("could not renew the claims of held messages: %r", exc)

    def wake_at(self, due: float) -> None:
        """Make the hub loop come round at monotonic time due (a claim held back till then)."""
        now = time.monotonic()
        pending = self._wake_due
        if self._loop is None or (pending is not None and now <= pending <= due):
            return  # a wake-up comes in time already
        self._wake_due = due
        self._loop.call_later(max(0.0, due - now), self._woken_up)

    def _woken_up(self) -> None:
        self._wake_due = None

    def keep_ticking(self, interval_s: float) -> None:
        """Make the hub loop come round at least every interval_s (for consumers that poll)."""
        if self._loop is not None and self._ticker is None:
            self._ticker = self._loop.call_repeatedly(interval_s, _nothing)

    def close_connection(self, connection: Any) -> None:
        """Close channels (their pending acks are written first)."""
        for timer in (self._ticker, self._renewer):
            if timer is not None:
                timer.cancel()
        self._ticker = self._renewer = None
        super().close_connection(connection)
        self.hub_driven = False


def _nothing() -> None:
    """A hub timer's callback whose only purpose is a turn of the loop."""
