"""What the console does to the cluster: remote control and the local supervisor (no UI).

Every method returns a one-line outcome for the console to show, and each has a CLI twin:
revoke/terminate `tq control revoke ID [--terminate]`, start `tq restart NODE` (a stopped
node starts) or `tq up`, stop `tq down NODE`, restart `tq restart NODE`, grow/shrink and
scale `tq control pool_grow|pool_shrink N -d NODE`, rate limit `tq control rate_limit TASK
RATE`, events `tq control enable_events|disable_events`, re-send `tq call --resend ID`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TQError
from ..queues import QueueDepth, queue_depths
from ..resend import TaskCall, find_call, resend
from .queue_board import consumers_by_queue

if TYPE_CHECKING:
    from kombu import Connection

    from ..app import App
    from ..cluster import TaskState

#: Seconds the console waits for workers to answer a control command (less once all did).
CONTROL_TIMEOUT_S = 1.0
#: Seconds the console waits for the supervisor's reply to `ps`.
PS_TIMEOUT_S = 2.0
#: Why node actions are off when no supervisor answers.
NO_SUPERVISOR = "no supervisor on this machine: start one with tq up"
NO_BROKER = "no broker: this console only shows recorded data"


@dataclass(frozen=True)
class SupervisorView:
    """The local supervisor's process table, or why there is none."""

    nodes: tuple[dict[str, Any], ...] = ()
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None

    def state_of(self, node: str) -> str | None:
        """The supervisor's state word for a node (RUNNING, STOPPED...), None if not its node."""
        for row in self.nodes:
            if row.get("name") == node:
                return str(row.get("state"))
        return None


def summarise(command: str, replies: dict[str, Any], *, destination: str | None = None) -> str:
    """One line out of {node: reply}: who said ok, who said what went wrong."""
    if not replies:
        where = destination or "any worker"
        return f"{command}: no answer from {where} within {CONTROL_TIMEOUT_S:.0f}s"
    failures = [
        f"{node}: {reply['error']}"
        for node, reply in sorted(replies.items())
        if isinstance(reply, dict) and "error" in reply
    ]
    ok = len(replies) - len(failures)
    text = f"{command}: ok on {ok} node{'s' if ok != 1 else ''}"
    return text + (f"; {'; '.join(failures)}" if failures else "")


class ConsoleOperations:
    """Remote control over the broker, and node actions through the local supervisor."""

    def __init__(
        self,
        app: App | None,
        run_dir: Path | None,
        online: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.app = app
        self.run_dir = run_dir
        #: How many workers should answer a broadcast (stop waiting once they have).
        self.online = online
        self._depth_connection: Connection | None = None

    def ask(
        self, command: str, arguments: dict[str, Any] | None = None, node: str = ""
    ) -> dict[str, Any]:
        """Broadcast a command (to one node, or all); {node: reply}, as soon as all answered."""
        assert self.app is not None
        limit = 1 if node else self.online()
        replies = self.app.control.broadcast(
            command,
            arguments,
            destination=[node] if node else None,
            reply=True,
            timeout=CONTROL_TIMEOUT_S,
            limit=limit or None,
        )
        merged: dict[str, Any] = {}
        for reply in replies or []:
            if isinstance(reply, dict):
                merged.update(reply)
        return merged

    # -- tasks ------------------------------------------------------------------------------

    def revoke(self, task_id: str | list[str], *, terminate: bool = False) -> str:
        """Broadcast a revoke (terminate: kill it if running); return a one-line outcome."""
        if self.app is None:
            return NO_BROKER
        arguments = {"task_id": task_id, "terminate": terminate, "signal": "SIGTERM"}
        replies = self.ask("revoke", arguments)
        verb = "terminate" if terminate else "revoke"
        what = task_id[:8] if isinstance(task_id, str) else f"{len(task_id)} task(s)"
        return f"{verb} {what} sent; {len(replies)} worker(s) acknowledged"

    def find_call(self, task: TaskState) -> TaskCall:
        """How a task was called (the result backend's record, else the event's reprs)."""
        if self.app is None:
            raise TQError(NO_BROKER)
        return find_call(
            self.app, task.uuid, name=task.name, args_repr=task.args, kwargs_repr=task.kwargs
        )

    def resend(self, call: TaskCall) -> str:
        """Send a call again; return the outcome with the new id."""
        if self.app is None:
            return NO_BROKER
        try:
            new_id = resend(self.app, call)
        except TQError as exc:
            return f"re-send failed: {exc}"
        return f"re-sent {call.describe(40)} as {new_id}"

    def rate_limit(self, task_name: str, rate: str) -> str:
        """Set a task's rate limit on every worker ('' or 0 turns it off)."""
        return self._control("rate_limit", {"task_name": task_name, "rate_limit": rate or "0"})

    def set_events(self, *, enabled: bool) -> str:
        """Turn task events on or off on every worker."""
        return self._control("enable_events" if enabled else "disable_events", None)

    # -- pools ------------------------------------------------------------------------------

    def pool_grow(self, node: str, n: int = 1) -> str:
        return self._control("pool_grow", {"n": n}, node)

    def pool_shrink(self, node: str, n: int = 1) -> str:
        return self._control("pool_shrink", {"n": n}, node)

    def scale_node(self, node: str, processes: int) -> str:
        """Grow or shrink a node's pool to `processes` (pool_grow/pool_shrink by the difference)."""
        if self.app is None:
            return NO_BROKER
        try:
            current, replies = self.app.control.scale_pool(
                node, processes, timeout=CONTROL_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - the broker away is an outcome to show
            return f"scale {node} failed: {exc}"
        if current is None:
            return f"scale {node}: it did not say its pool size within {CONTROL_TIMEOUT_S:.0f}s"
        if current == processes:
            return f"scale {node}: already {current} processes"
        command = "pool_grow" if processes > current else "pool_shrink"
        return summarise(command, replies, destination=node) + f" ({current} -> {processes})"

    def _control(self, command: str, arguments: dict[str, Any] | None, node: str = "") -> str:
        if self.app is None:
            return NO_BROKER
        try:
            replies = self.ask(command, arguments, node)
        except Exception as exc:  # noqa: BLE001 - the broker away is an outcome to show
            return f"{command} failed: {exc}"
        return summarise(command, replies, destination=node or None)

    # -- queues -----------------------------------------------------------------------------

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
        return consumers_by_queue(self.ask("active_queues"))

    # -- the local supervisor ---------------------------------------------------------------

    def supervisor(self) -> SupervisorView:
        """Ask the local supervisor for its nodes; say why not when it does not answer."""
        if self.run_dir is None:
            return SupervisorView(reason=NO_SUPERVISOR)
        from ..supervisor import ipc

        try:
            reply = ipc.request(self.run_dir, {"cmd": "ps"}, timeout_s=PS_TIMEOUT_S)
        except (TQError, OSError, ValueError):
            return SupervisorView(reason=f"{NO_SUPERVISOR} (none answers in {self.run_dir})")
        return SupervisorView(nodes=tuple(reply.get("nodes") or ()))

    def start_node(self, name: str) -> str:
        """Start a stopped node (the supervisor's restart starts a node that is down)."""
        return self._supervise("restart", name, "start")

    def stop_node(self, name: str) -> str:
        """Warm stop: the supervisor sends TERM and KILLs after the node's stop timeout."""
        return self._supervise("down", name, "stop")

    def restart_node(self, name: str) -> str:
        """Ask the supervisor to restart one node; return a one-line outcome."""
        return self._supervise("restart", name, "restart")

    def _supervise(self, command: str, name: str, verb: str) -> str:
        if self.run_dir is None:
            return NO_SUPERVISOR
        from ..supervisor import ipc

        try:
            reply = ipc.request(self.run_dir, {"cmd": command, "nodes": [name]})
        except (TQError, OSError, ValueError) as exc:
            return f"{verb} {name} failed: {exc}"
        if not reply.get("ok", True):
            return f"{verb} {name} failed: {reply.get('error')}"
        return f"{verb} {name} requested"
