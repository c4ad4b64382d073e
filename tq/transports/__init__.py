"""Broker transports tq adds to kombu: the embedded SQLite broker and a faster Redis transport."""

from __future__ import annotations

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
#: Values of the broker_redis_transport setting.
REDIS_TRANSPORT_CHOICES = ("tq", "kombu")


def register_transports() -> None:
    """Make kombu.Connection accept tq's URL schemes (sqlite://); safe to call repeatedly."""
    TRANSPORT_ALIASES.update(TQ_TRANSPORTS)


def transport_for_url(url: str, settings: Mapping[str, Any]) -> str | None:
    """The kombu transport tq picks for a broker URL, or None to let kombu choose by scheme.

    redis:// and rediss:// get tq's Redis transport unless broker_redis_transport is "kombu".
    It is chosen per connection (not registered as kombu's "redis" alias), so a Celery app in
    the same process keeps kombu's own transport.
    """
    choice = settings.get("broker_redis_transport") or "tq"
    if choice not in REDIS_TRANSPORT_CHOICES:
        raise ConfigError(
            f"broker_redis_transport must be 'tq' (tq's faster Redis transport) or 'kombu' "
            f"(kombu's own), not {choice!r}"
        )
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES and choice == "tq":
        return TQ_REDIS_TRANSPORT
    return None


class BrokerConnection(Connection):
    """A kombu Connection that shows redis:// in its URL when tq chose the transport."""

    def as_uri(self, *args: Any, **kwargs: Any) -> str:
        """The URL as kombu shows it, with the URL scheme in place of tq's transport path."""
        uri = str(super().as_uri(*args, **kwargs))
        if self.transport_cls == TQ_REDIS_TRANSPORT and uri.startswith(TQ_REDIS_TRANSPORT):
            scheme = "rediss" if self.ssl else "redis"
            return scheme + uri[len(TQ_REDIS_TRANSPORT) :]
        return uri
