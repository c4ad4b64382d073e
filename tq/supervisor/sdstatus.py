"""What a foreground supervisor tells systemd: READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .. import sdnotify
from .managed import FATAL, RUNNING, STOPPED

#: States in which a node has settled (it is up, or it will not come up by itself).
SETTLED_STATES = (RUNNING, FATAL, STOPPED)
#: While nodes drain on stop, ask systemd for this much more time (microseconds) ...
EXTEND_TIMEOUT_USEC = 5_000_000
#: ... this often, so that a stalled supervisor is still stopped by systemd soon after.
EXTEND_EVERY_S = 1.0


class SystemdStatus:
    """Speaks sd_notify for the supervisor when it runs in the foreground (else stays silent)."""

    def __init__(self, *, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.clock = clock
        #: Half of systemd's WatchdogSec (WATCHDOG_USEC), or None: no watchdog pings.
        self.watchdog_every_s = sdnotify.watchdog_interval_s() if enabled else None
        self._announced_ready = False
        self._last_status = ""
        self._next_watchdog = 0.0
        self._next_extend = 0.0

    def report(self, states: Iterable[str]) -> None:
        """STATUS= when the counts change, READY=1 once every node settled, WATCHDOG=1 when due."""
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
        if not self._announced_ready and all(state in SETTLED_STATES for state in states):
            sdnotify.ready(status)
            self._announced_ready = True
        now = self.clock()
        if self.watchdog_every_s is not None and now >= self._next_watchdog:
            sdnotify.watchdog()
            self._next_watchdog = now + self.watchdog_every_s

    def stopping(self) -> None:
        """The supervisor begins to stop (STOPPING=1)."""
        if self.enabled:
            sdnotify.stopping()

    def draining(self) -> None:
        """Nodes still finish their tasks: keep systemd from killing them (EXTEND_TIMEOUT_USEC)."""
        now = self.clock()
        if self.enabled and now >= self._next_extend:
            sdnotify.extend_timeout(EXTEND_TIMEOUT_USEC)
            self._next_extend = now + EXTEND_EVERY_S
