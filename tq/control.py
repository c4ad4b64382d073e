"""Remote-control client: broadcast commands to workers over the pidbox mailbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kombu.clocks import LamportClock
from kombu.pidbox import Mailbox

if TYPE_CHECKING:
    from .app import App

#: Seconds a broadcast waits for replies unless told otherwise (Celery's default).
DEFAULT_TIMEOUT_S = 1.0

#: Celery's pidbox queue lifetimes: a worker's queue keeps commands 300 s and
#: disappears 10 s after its worker; a client's reply queue likewise.
CONTROL_QUEUE_TTL_S = 300.0
CONTROL_QUEUE_EXPIRES_S = 10.0
REPLY_QUEUE_EXPIRES_S = 10.0


def make_mailbox(app: App, clock: LamportClock | None = None) -> Mailbox:
    """Return the app's pidbox mailbox (fanout exchange `<control_exchange>.pidbox`)."""
    conf = app.conf
    return Mailbox(
        conf.control_exchange,
        type="fanout",
        clock=clock,
        accept=list(conf.accept_content),
        serializer="json",
        queue_ttl=CONTROL_QUEUE_TTL_S,
        queue_expires=CONTROL_QUEUE_EXPIRES_S,
        reply_queue_expires=REPLY_QUEUE_EXPIRES_S,
    )


class Control:
    """Send remote-control commands to workers and collect their replies."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.mailbox = make_mailbox(app)

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: list[str] | tuple[str, ...] | None = None,
        reply: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        limit: int | None = None,
    ) -> list[dict[str, Any]] | None:
        """Send a command to every worker (or those in `destination`); return replies if asked."""
        if isinstance(destination, str):
            destination = [part for part in destination.split(",") if part]
        with self.app.broker_connection() as connection:
            mailbox = self.mailbox(connection)
            return mailbox._broadcast(
                command,
                arguments,
                destination=list(destination) if destination else None,
                reply=reply,
                timeout=timeout,
                limit=limit,
            )

    def revoke(
        self,
        task_id: str | list[str],
        *,
        terminate: bool = False,
        signal: str | None = None,
        reply: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        destination: list[str] | None = None,
    ) -> list[dict[str, Any]] | None:
        """Tell workers never to run these task ids (and kill them if running, with terminate)."""
        return self.broadcast(
            "revoke",
            {"task_id": task_id, "terminate": terminate, "signal": signal or "SIGTERM"},
            destination=destination,
            reply=reply,
            timeout=timeout,
        )

    def ping(
        self, *, destination: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Ask workers for `pong`; return one {node: reply} dict per worker that answered."""
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout) or []

    def call(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: list[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send a command that wants replies; return {node: reply} for every node that answered."""
        replies = self.broadcast(
            command, arguments, destination=destination, reply=True, timeout=timeout
        )
        merged: dict[str, Any] = {}
        for reply in replies or []:
            if isinstance(reply, dict):
                merged.update(reply)
        return merged

    def inspect(
        self, command: str | None = None, arguments: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Run a read-only command (active, stats, ...) on the workers; without a command,
        return Celery's `Inspect` shape: `app.control.inspect(destination=[...]).active()`."""
        if command is None:
            return Inspect(self, options)
        return self.call(command, arguments, **options)

    def enable_events(self, **options: Any) -> dict[str, Any]:
        return self.call("enable_events", **options)

    def disable_events(self, **options: Any) -> dict[str, Any]:
        return self.call("disable_events", **options)

    def rate_limit(self, task_name: str, rate_limit: str, **options: Any) -> dict[str, Any]:
        return self.call(
            "rate_limit", {"task_name": task_name, "rate_limit": rate_limit}, **options
        )

    def time_limit(
        self, task_name: str, soft: float | None = None, hard: float | None = None, **options: Any
    ) -> dict[str, Any]:
        return self.call(
            "time_limit", {"task_name": task_name, "soft": soft, "hard": hard}, **options
        )

    def pool_grow(self, n: int = 1, **options: Any) -> dict[str, Any]:
        return self.call("pool_grow", {"n": n}, **options)

    def pool_shrink(self, n: int = 1, **options: Any) -> dict[str, Any]:
        return self.call("pool_shrink", {"n": n}, **options)

    def pool_size(self, node: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> int | None:
        """A node's pool size as its `stats` says (None if it does not answer in time)."""
        reply = self.call("stats", destination=[node], timeout=timeout).get(node) or {}
        size = (reply.get("pool") or {}).get("max-concurrency")
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    def scale_pool(
        self, node: str, processes: int, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> tuple[int | None, dict[str, Any]]:
        """Grow or shrink one node's pool to `processes`: (its size before, the node's reply).

        The size before is None when the node did not answer; the reply is empty when nothing
        had to change.
        """
        current = self.pool_size(node, timeout=timeout)
        if current is None or current == processes:
            return current, {}
        command, step = (
            ("pool_grow", processes - current)
            if processes > current
            else ("pool_shrink", current - processes)
        )
        return current, self.call(command, {"n": step}, destination=[node], timeout=timeout)

    def autoscale(self, max: int, min: int, **options: Any) -> dict[str, Any]:  # noqa: A002
        return self.call("autoscale", {"max": max, "min": min}, **options)

    def add_consumer(self, queue: str, **options: Any) -> dict[str, Any]:
        return self.call("add_consumer", {"queue": queue}, **options)

    def cancel_consumer(self, queue: str, **options: Any) -> dict[str, Any]:
        return self.call("cancel_consumer", {"queue": queue}, **options)

    def shutdown(self, *, destination: list[str] | None = None) -> None:
        """Ask workers to stop (warm); no reply comes, as in Celery."""
        self.broadcast("shutdown", destination=destination, reply=False)


class Inspect:
    """Read-only commands as methods, as Celery's `app.control.inspect()` offers them: each
    returns {node: reply}, or None when no worker answered (as Celery does)."""

    def __init__(self, control: Control, options: dict[str, Any]) -> None:
        self._control = control
        self._options = options

    def __getattr__(self, command: str) -> Any:
        if command.startswith("_"):
            raise AttributeError(command)

        def run(*ids: str, **arguments: Any) -> dict[str, Any] | None:
            if ids:  # query_task(*ids), as in Celery
                arguments["ids"] = list(ids)
            return self._control.call(command, arguments or None, **self._options) or None

        return run
