"""Result backends: where workers store task states and results for clients to read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..app import App
    from .base import Backend


def backend_for_url(app: App, url: str | None) -> Backend:
    """Return the backend named by a result_backend URL (None: results disabled)."""
    if not url:
        from .base import DisabledBackend

        return DisabledBackend(app)
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme in ("rpc", "amqp"):
        from .rpc import RPCBackend

        return RPCBackend(app, url)
    if scheme in ("redis", "rediss", "redis+socket", "unix"):
        from .redis import RedisBackend

        return RedisBackend(app, url)
    if scheme == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(app, url)
    raise ConfigError(
        f"result_backend {url!r} is not supported: use rpc://, redis://host:port/db or "
        "sqlite:///path/results.db"
    )
