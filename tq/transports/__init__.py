"""Broker transports tq adds to kombu: the embedded SQLite broker, faster Redis and AMQP ones."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES

from ..errors import ConfigError

#: URL scheme -> kombu transport class path, for every transport tq provides.
TQ_TRANSPORTS = {
    "sqlite": "tq.transports.sqlite:Transport",
}
#: tq's Redis transport (same keys as kombu's: Celery processes share the Redis with it).
TQ_REDIS_TRANSPORT = "tq.transports.redis:Transport"
#: Broker URL schemes tq's Redis transport serves (sentinel:// and socket URLs stay kombu's).
REDIS_SCHEMES = ("redis", "rediss")
#: tq's AMQP transport (py-amqp with buffered socket reads).
TQ_AMQP_TRANSPORT = "tq.transports.amqp:Transport"
#: Broker URL schemes tq's AMQP transport serves (amqps:// too: TLS keeps py-amqp's reads).
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
#: A worker on tq's Redis or embedded transport marks the messages it holds as claimed again
#: this many times per visibility timeout, so that only a dead or hung one's come back.
LEASE_RENEWALS_PER_TIMEOUT = 4
#: Values of the broker_redis_transport and broker_amqp_transport settings.
TRANSPORT_CHOICES = ("tq", "kombu")
#: The scheme a URL shows for each of tq's transports (kombu would show the class path).
SHOWN_SCHEMES = {TQ_REDIS_TRANSPORT: ("redis", "rediss"), TQ_AMQP_TRANSPORT: ("amqp", "amqps")}


def restore_due(qos: Any) -> bool:
    """The start of a channel's restore-once (kombu's QoS.restore_unacked_once): fold in the
    acks, and say whether a restore is still to do (not done yet, restoring not switched off;
    off counts as done). tq's QoS classes go on from here keeping what a failed restore held."""
    qos._on_collect.cancel()
    qos._flush()  # acked but not yet forgotten: not counted, nor restored
    state = qos._delivered
    if getattr(state, "restored", False):
        return False
    if not qos.restore_at_shutdown or not qos.channel.do_restore:
        state.restored = True
        return False
    return True


def register_transports() -> None:
    """Make kombu.Connection accept tq's URL schemes (sqlite://); safe to call repeatedly."""
    TRANSPORT_ALIASES.update(TQ_TRANSPORTS)


def transport_for_url(url: str, settings: Mapping[str, Any]) -> str | None:
    """The kombu transport tq picks for a broker URL, or None to let kombu choose by scheme.

    redis:// and rediss:// get tq's Redis transport unless broker_redis_transport is "kombu";
    amqp://, amqps:// and pyamqp:// get tq's AMQP transport unless broker_amqp_transport is
    "kombu". It is chosen per connection (not registered as a kombu alias), so a Celery app
    in the same process keeps kombu's own transports.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES and _choice(settings, "broker_redis_transport") == "tq":
        return TQ_REDIS_TRANSPORT
    if scheme in AMQP_SCHEMES and _choice(settings, "broker_amqp_transport") == "tq":
        return TQ_AMQP_TRANSPORT
    return None


def _choice(settings: Mapping[str, Any], name: str) -> str:
    choice = settings.get(name) or "tq"
    if choice not in TRANSPORT_CHOICES:
        raise ConfigError(
            f"{name} must be 'tq' (tq's faster transport) or 'kombu' (kombu's own), not {choice!r}"
        )
    return str(choice)


class BrokerConnection(Connection):
    """A kombu Connection that shows redis:// or amqp:// in its URL when tq chose the transport."""

    def as_uri(self, *args: Any, **kwargs: Any) -> str:
        """The URL as kombu shows it, with the URL scheme in place of tq's transport path."""
        uri = str(super().as_uri(*args, **kwargs))
        schemes = SHOWN_SCHEMES.get(str(self.transport_cls))
        if schemes is not None and uri.startswith(str(self.transport_cls)):
            scheme = schemes[1] if self.ssl else schemes[0]
            return scheme + uri[len(str(self.transport_cls)) :]
        return uri


@functools.cache
def redis_client_identity() -> dict[str, Any]:
    """How redis-py connections introduce themselves (CLIENT SETINFO), worked out once.

    Left to itself redis-py reads its version from the installed package's metadata for every
    connection it makes (~0.5 ms each, ~2 ms the first time), and a worker makes several on
    its way to the first task. Pass these keyword arguments to its pools and clients instead.
    """
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py < 7 names the version itself
        try:
            from redis.utils import get_lib_version
        except ImportError:
            return {}
        return {"lib_version": get_lib_version()}
    return {"driver_info": DriverInfo()}
