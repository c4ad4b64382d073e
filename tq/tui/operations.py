"""What the console does to the cluster: remote control and the local supervisor (no UI)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TQError
from ..queues import QueueDepth, queue_depths
from .queue_board import consumers_by_queue

if TYPE_CHECKING:
    from kombu import Connection

    from ..app import App

#: Seconds the console waits for workers to answer a revoke.
REVOKE_TIMEOUT_S = 1.0
#: Seconds the console waits for the supervisor's reply to `ps`.
PS_TIMEOUT_S = 2.0
#: Seconds the console waits for workers to say which queues they consume.
ACTIVE_QUEUES_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class SupervisorView:
    """The local supervisor's process table, or why there is none."""

    nodes: tuple[dict[str, Any], ...] = ()
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None


class ConsoleOperations:
    """Revoke tasks over remote control; list and restart nodes through the supervisor."""

    def __init__(self, app: App | None, run_dir: Path | None) -> None:
        self.app = app
        self.run_dir = run_dir
        self._depth_connection: Connection | None = None

    def queue_depths(self, names: Iterable[str]) -> list[QueueDepth]:
        """Ask the broker how deep each queue is (one connection, kept between calls)."""
        if self.app is None:
            return []
        if self._depth_connection is None:
            self._depth_connection = self.app.broker_connection()
        try:
            return queue_depths(self._depth_connection, names)
        except Exception:
            self._depth_connection.release()
            self._depth_connection = None
            raise

    def active_queues(self) -> dict[str, tuple[str, ...]]:
        """Which nodes consume which queue, as the workers answer `inspect active_queues`."""
        if self.app is None:
            return {}
        replies = self.app.control.call("active_queues", timeout=ACTIVE_QUEUES_TIMEOUT_S)
        return consumers_by_queue(replies)

    def revoke(self, task_id: str, *, terminate: bool = False) -> str:
        """Broadcast a revoke (terminate: kill it if running); return a one-line outcome."""
        if self.app is None:
            return "no broker: this console only shows recorded data"
        replies = self.app.control.revoke(
            task_id, terminate=terminate, reply=True, timeout=REVOKE_TIMEOUT_S
        )
        verb = "terminate" if terminate else "revoke"
        return f"{verb} {task_id[:8]} sent; {len(replies or [])} worker(s) acknowledged"

    def supervisor(self) -> SupervisorView:
        """Ask the local supervisor for its nodes; say why not when it does not answer."""
        if self.run_dir is None:
            return SupervisorView(reason="no supervisor run directory given")
        from ..supervisor import ipc

        try:
            reply = ipc.request(self.run_dir, {"cmd": "ps"}, timeout_s=PS_TIMEOUT_S)
        except (TQError, OSError, ValueError):
            return SupervisorView(
                reason=f"no supervisor answers in {self.run_dir} (start nodes with `tq up`)"
            )
        return SupervisorView(nodes=tuple(reply.get("nodes") or ()))

    def restart_node(self, name: str) -> str:
        """Ask the supervisor to restart one node; return a one-line outcome."""
        if self.run_dir is None:
            return "no supervisor run directory given"
        from ..supervisor import ipc

        try:
            ipc.request(self.run_dir, {"cmd": "restart", "nodes": [name]})
        except (TQError, OSError, ValueError) as exc:
            return f"restart {name} failed: {exc}"
        return f"restart {name} requested"
