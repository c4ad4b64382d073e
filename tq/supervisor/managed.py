"""One supervised node: its state machine (starting, running, backoff, stopping, fatal)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import process
from .nodes import NodeSpec

STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, FATAL = (
    "STARTING",
    "RUNNING",
    "BACKOFF",
    "STOPPING",
    "STOPPED",
    "FATAL",
)

#: Crash-restart back-off: 1 s doubling, capped; FATAL after more than CRASH_LIMIT crashes in the window.
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
#: Lines of the log kept with a FATAL node, for `tq ps`.
FATAL_LOG_LINES = 10


@dataclass(frozen=True)
class Policy:
    """How a node is kept alive."""

    restart: str = "on-failure"  # or "forever": keep retrying at the capped interval, never FATAL
    start_secs: float = 1.0  # must stay up this long to count as started
    stop_timeout_s: float = 60.0  # warm shutdown budget before SIGKILL
    backoff_start_s: float = (
        BACKOFF_START_S  # first crash-restart delay, doubling up to BACKOFF_MAX_S
    )


@dataclass
class ManagedNode:
    """A node the supervisor owns (or re-adopted): spec, process, state, history."""

    spec: NodeSpec
    log_path: Path
    state: str = STOPPED
    popen: subprocess.Popen[bytes] | None = None
    identity: process.Identity | None = None
    started_at: float | None = None
    ready: bool = False
    restarts: int = 0
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    retry_at: float | None = None
    stop_deadline: float | None = None
    stop_requested: bool = False
    remove_when_stopped: bool = False  # dropped from the table by `tq up` with other arguments
    last_exit: str | None = None
    fatal_log: list[str] = field(default_factory=list)
    known_children: list[psutil.Process] = field(default_factory=list)
    sampler: process.Sampler = field(default_factory=process.Sampler)

    @property
    def pid(self) -> int | None:
        return self.identity.pid if self.identity else None

    def start(self, *, env: dict[str, str], cwd: str) -> None:
        """Spawn the node (after a crash, a restart or for the first time)."""
        self.popen = process.spawn(self.spec.command(), log_path=self.log_path, env=env, cwd=cwd)
        self.identity = process.identity_of(self.popen.pid) or process.Identity(
            self.popen.pid, time.time(), tuple(self.spec.command())
        )
        self.state, self.started_at, self.ready = STARTING, time.time(), False
        self.retry_at = self.stop_deadline = None
        self.stop_requested = False

    def adopt(self, identity: process.Identity) -> None:
        """Take over a node left running by a previous supervisor."""
        self.identity, self.popen = identity, None
        self.state, self.ready = RUNNING, True
        self.started_at = identity.create_time

    def exit_status(self) -> str | None:
        """If the process has ended, say how (and reap it); None while it runs."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if self.identity is not None and self.identity.matches():
            return None
        return "exited (adopted: exit code unknown)"

    def request_stop(self, timeout_s: float, signum: int = signal.SIGTERM) -> None:
        """Warm stop: TERM to the main process only; KILL the group if the deadline passes."""
        self.stop_requested = True
        if self.state in (BACKOFF, FATAL, STOPPED) or self.pid is None:
            self.state, self.retry_at = STOPPED, None
            return
        self.known_children = process.descendants(self.pid)
        process.signal_main(self.pid, signum)
        self.state = STOPPING
        self.stop_deadline = time.time() + timeout_s

    def kill(self) -> None:
        """SIGKILL the node's whole process group and every process we knew in it."""
        if self.pid is not None:
            self.known_children = self.known_children or process.descendants(self.pid)
            process.kill_everything(self.pid, self.known_children)

    def on_exit(self, how: str, policy: Policy, now: float) -> str:
        """Decide what an exit means; return the event name (stopped, exited, fatal)."""
        self.last_exit = how
        self.popen = None
        for stray in self.known_children:  # no orphaned pool processes, ever
            try:
                if stray.is_running():
                    stray.kill()
            except psutil.Error:
                pass
        self.known_children = []
        if self.stop_requested:
            self.state, self.identity = STOPPED, None
            return "stopped"
        self.crashes.append(now)
        recent = [moment for moment in self.crashes if now - moment <= CRASH_WINDOW_S]
        self.identity = None
        if len(recent) > CRASH_LIMIT and policy.restart != "forever":
            self.state = FATAL
            self.fatal_log = tail(self.log_path, FATAL_LOG_LINES)
            return "fatal"
        delay = min(BACKOFF_MAX_S, policy.backoff_start_s * 2 ** (len(recent) - 1))
        self.state, self.retry_at = BACKOFF, now + delay
        return "exited"

    def describe(self, now: float) -> dict[str, Any]:
        """The row `tq ps` shows."""
        cpu, rss = (
            self.sampler.sample(self.pid)
            if self.state in (STARTING, RUNNING, STOPPING)
            else (0.0, 0)
        )
        queues = self.spec.option("-Q", "--queues") or "celery"
        return {
            "name": self.spec.name,
            "pid": self.pid,
            "state": self.state,
            "uptime_s": round(now - self.started_at, 1) if self.started_at and self.pid else None,
            "restarts": self.restarts,
            "queues": queues,
            "concurrency": self.spec.option("-c", "--concurrency")
            or self.spec.option("--autoscale")
            or "cpus",
            "loglevel": self.spec.option("-l", "-L", "--loglevel") or "warning",
            "cpu_percent": round(cpu, 1),
            "rss_bytes": rss,
            "log": str(self.log_path),
            "last_exit": self.last_exit,
            "retry_in_s": round(self.retry_at - now, 1) if self.retry_at else None,
            "fatal_log": self.fatal_log if self.state == FATAL else [],
        }


def tail(path: Path, lines: int) -> list[str]:
    """The last lines of a log file (bounded read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            return handle.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
