"""One supervised node: its state machine (starting, running, backoff, stopping, fatal)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import process
from .nodes import NodeSpec
from .policy import CRASH_WINDOW_S, Policy

STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, FATAL = (
    "STARTING",
    "RUNNING",
    "BACKOFF",
    "STOPPING",
    "STOPPED",
    "FATAL",
)

#: Lines of the log kept with a FATAL node, for `tq ps`.
FATAL_LOG_LINES = 10


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
    log_error: str | None = None  # why writing its log fails now (disk full, rotation failed)
    known_children: list[psutil.Process] = field(default_factory=list)
    sampler: process.Sampler = field(default_factory=process.Sampler)

    @property
    def policy(self) -> Policy:
        """This node's restart policy (part of its spec: `--restart:3=forever`)."""
        return self.spec.policy

    @property
    def pid(self) -> int | None:
        return self.identity.pid if self.identity else None

    def start(self, *, env: dict[str, str], cwd: str) -> None:
        """Spawn the node (after a crash, a restart or for the first time)."""
        command, urls = process.hide_urls(self.spec.command())
        self.popen = process.spawn(command, log_path=self.log_path, env={**env, **urls}, cwd=cwd)
        self.identity = process.identity_of_spawned(self.popen.pid, command)
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

    def request_stop(self, timeout_s: float | None = None, signum: int = signal.SIGTERM) -> None:
        """Warm stop: TERM to the main process only; KILL the group after its stop timeout."""
        self.stop_requested = True
        if self.state in (BACKOFF, FATAL, STOPPED) or self.pid is None:
            self.state, self.retry_at = STOPPED, None
            return
        self.known_children = process.descendants(self.pid)
        process.signal_main(self.pid, signum)
        self.state = STOPPING
        self.stop_deadline = time.time() + (
            self.policy.stop_timeout_s if timeout_s is None else timeout_s
        )

    def kill(self) -> None:
        """SIGKILL the node's whole process group and every process we knew in it."""
        if self.pid is not None:
            self.known_children = self.known_children or process.descendants(self.pid)
            process.kill_everything(self.pid, self.known_children)

    def on_exit(self, how: str, now: float) -> str:
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
        if self.policy.gives_up(len(recent)):
            self.state = FATAL
            self.fatal_log = tail(self.log_path, FATAL_LOG_LINES)
            return "fatal"
        self.state, self.retry_at = BACKOFF, now + self.policy.retry_delay_s(len(recent))
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
            "log_error": self.log_error,
            "policy": asdict(self.policy),
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
