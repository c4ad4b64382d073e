"""A node's restart policy: --restart, --start-secs, --stop-timeout, --backoff-start.

These are options of the multi grammar like any other (`tq up 3 --restart:3=forever`), so each
node carries its own; `nodes.py` expands them, this module only reads and checks the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: Crash-restart back-off: 1 s doubling, capped; FATAL past CRASH_LIMIT crashes in the window.
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
#: A node must stay up (and say it is ready) this long to count as started.
START_SECS_S = 1.0
#: Warm-stop budget of a node before its process group is SIGKILLed.
STOP_TIMEOUT_S = 60.0
#: `--restart` values: give up after a crash loop (FATAL), or never give up.
RESTART_CHOICES = ("on-failure", "forever")

#: The grammar's option for each policy field (read by the supervisor, never seen by the worker).
POLICY_KEYS = {
    "--restart": "restart",
    "--start-secs": "start_secs",
    "--stop-timeout": "stop_timeout_s",
    "--backoff-start": "backoff_start_s",
}


@dataclass(frozen=True)
class Policy:
    """How one node is kept alive."""

    restart: str = "on-failure"  # or "forever": keep retrying at the capped interval, never FATAL
    start_secs: float = START_SECS_S  # must stay up this long to count as started
    stop_timeout_s: float = STOP_TIMEOUT_S  # warm shutdown budget before SIGKILL
    backoff_start_s: float = BACKOFF_START_S  # first crash-restart delay, doubling to BACKOFF_MAX_S

    def retry_delay_s(self, recent_crashes: int) -> float:
        """The wait before the next start after this many crashes in the window."""
        return min(BACKOFF_MAX_S, self.backoff_start_s * 2 ** max(0, recent_crashes - 1))

    def gives_up(self, recent_crashes: int) -> bool:
        """Is this crash loop FATAL (never, with --restart=forever)?"""
        return self.restart != "forever" and recent_crashes > CRASH_LIMIT


def policy_from_options(nodename: str, options: dict[str, str | None]) -> Policy:
    """Build a node's policy from its policy options (`{"--restart": "forever"}`); check values."""
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or value == "":
            raise ConfigError(f"{nodename}: {key} needs a value: write {key}=VALUE")
        if key == "--restart":
            if value not in RESTART_CHOICES:
                raise ConfigError(
                    f"{nodename}: --restart={value}: use {' or '.join(RESTART_CHOICES)}"
                )
            fields["restart"] = value
            continue
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number >= 0 or number == float("inf") or (key != "--start-secs" and number == 0):
            at_least = "0 or more" if key == "--start-secs" else "more than 0"
            raise ConfigError(f"{nodename}: {key}={value}: give seconds, {at_least}")
        fields[POLICY_KEYS[key]] = number
    return Policy(**fields)


def policy_from_dict(saved: dict[str, Any] | None) -> Policy:
    """A policy saved in the node table (absent from tables written before it was per node)."""
    known = {
        name: value for name, value in (saved or {}).items() if name in Policy.__dataclass_fields__
    }
    return Policy(**known)
