"""What a foreground supervisor tells systemd: READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT."""

from __future__ import annotations

from collections.abc import Iterable

from .. import sdnotify
from .managed import FATAL, RUNNING, STOPPED

#: States in which a node has settled (it is up, or it will not come up by itself).
SETTLED_STATES = (RUNNING, FATAL, STOPPED)
#: While nodes drain on stop, ask systemd for this much more time each tick (microseconds).
EXTEND_TIMEOUT_USEC = 5_000_000


class SystemdStatus:
    """Speaks sd_notify for the supervisor when it runs in the foreground (else stays silent)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._announced_ready = False
        self._last_status = ""

    def report(self, states: Iterable[str]) -> None:
        """Send STATUS= when the counts change, READY=1 once every node settled, WATCHDOG=1."""
        if not self.enabled:
            return
        states = list(states)
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        status = (
            ", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
            or "no nodes"
        )
        if status != self._last_status:
            sdnotify.status(status)
            self._last_status = status
        if not self._announced_ready and states and all(s in SETTLED_STATES for s in states):
            sdnotify.ready(status)
            self._announced_ready = True
        sdnotify.watchdog()

    def stopping(self) -> None:
        """The supervisor begins to stop (STOPPING=1)."""
        if self.enabled:
            sdnotify.stopping()

    def draining(self) -> None:
        """Nodes still finish their tasks: keep systemd from killing them (EXTEND_TIMEOUT)."""
        if self.enabled:
            sdnotify.extend_timeout(EXTEND_TIMEOUT_USEC)
