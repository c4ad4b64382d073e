"""How tq's Redis consumer learns that a queue has work: Redis's client-side tracking.

After a claim finds the queues empty, the claim script leaves Redis tracking their keys
(``CLIENT TRACKING ... NOLOOP`` on the consuming connection, RESP3): the next push to any of
them sends an invalidation on that same connection, which wakes the hub and starts the next
claim. A Redis that refuses the command leaves the consumer polling every IDLE_POLL_S.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from . import redis_client_identity
from .redis_routing import RoutingChannel
from .redis_timing import IDLE_POLL_S, CallTiming

if TYPE_CHECKING:
    from .redis import Transport

logger = logging.getLogger("tq.transports.redis")


class WakingChannel(RoutingChannel):
    """The tracking half of tq's Redis channel (redis_channel.Channel sets the state)."""

    connection: Transport
    _timing: CallTiming
    _tracked_sock: Any

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        params = super()._connparams(asynchronous=asynchronous)
        params.update(redis_client_identity())
        if asynchronous:
            # Invalidation pushes arrive on the consuming connection itself: RESP3 only.
            params["protocol"] = 3
        return params

    def _enable_tracking(self, connection: Any) -> None:
        connection._parser.set_invalidation_push_handler(self._on_invalidation)
        if self._tracked_sock is connection._sock:
            return
        # NOLOOP: our own pops do not wake us. The reply comes before anything we send next.
        connection.send_command("CLIENT", "TRACKING", "ON", "NOLOOP", check_health=False)
        try:
            connection.read_response()
        except ResponseError as exc:
            if not self._timing.polling:
                logger.warning(
                    "Redis refused CLIENT TRACKING (%s): idle consumers poll every %.0f ms "
                    "instead of being woken; allow the command for this user, or set "
                    "broker_redis_transport='kombu'",
                    exc,
                    IDLE_POLL_S * 1000,
                )
            self._timing.polling = True
            self.connection.keep_ticking(IDLE_POLL_S)
        self._tracked_sock = connection._sock

    def _on_invalidation(self, response: Any) -> Any:
        self._timing.woken = True
        return response

    def _read_pushes(self, connection: Any, *, buffered_only: bool = False) -> None:
        # Pushes can sit in redis-py's buffer, where the poller would never see them. After a
        # reply only that buffer needs a look: bytes in the socket wake the poller anyway.
        try:
            while connection._sock is not None and _holds_bytes(
                connection, buffered_only=buffered_only
            ):
                connection.read_response(push_request=True)
        except self.connection_errors:
            self._tracked_sock = None
            connection.disconnect()
            raise


def _holds_bytes(connection: Any, *, buffered_only: bool) -> bool:
    """Whether redis-py has bytes to read: in its parser's buffer, or (unless buffered_only)
    in the socket (can_read: three system calls to find it empty; hiredis's parser always)."""
    buffer = getattr(connection._parser, "_buffer", None) if buffered_only else None
    unread_bytes = getattr(buffer, "unread_bytes", None)
    return bool(connection.can_read(timeout=0) if unread_bytes is None else unread_bytes())
