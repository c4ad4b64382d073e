"""Node processes: spawn in their own session, know them again by identity, stop, sweep, sample."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Identity:
    """What makes a pid *this* process: a recycled pid has another start time or command."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    def matches(self) -> bool:
        """Is the process with this pid still the one we started?"""
        current = identity_of(self.pid)
        return (
            current is not None
            and abs(current.create_time - self.create_time) < 0.01
            and current.cmdline == self.cmdline
        )


def identity_of(pid: int) -> Identity | None:
    """Return the identity of a live process, or None."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return Identity(pid, process.create_time(), tuple(process.cmdline()))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def identity_of_spawned(pid: int, command: Sequence[str]) -> Identity:
    """The identity of a process we just started: its start time and the command we gave it.

    Its /proc cmdline can still be empty when Popen returns (the kernel closes CLOEXEC fds, which
    wakes Popen, before it lays out the new argv), so the command is taken as given.
    """
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = time.time()
    return Identity(pid, create_time, tuple(command))


#: tq's global options whose values can hold a password, and the variable that carries each
#: to the node instead: every local user can read a command line (/proc), not an environment.
URL_OPTIONS = {
    "-b": "TQ_BROKER_URL",
    "--broker": "TQ_BROKER_URL",
    "--result-backend": "TQ_RESULT_BACKEND",
}


def hide_urls(command: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Move -b/--broker/--result-backend values (before `worker`) from command into variables."""
    words = list(command)
    stop = words.index("worker") if "worker" in words else len(words)
    kept, env = [], {}
    position = 0
    while position < len(words):
        key, equals, value = words[position].partition("=")
        if position < stop and key in URL_OPTIONS and (equals or position + 1 < stop):
            if not equals:
                position += 1
                value = words[position]
            env[URL_OPTIONS[key]] = value
        else:
            kept.append(words[position])
        position += 1
    return kept, env


def spawn(
    command: list[str], *, log_path: Path, env: dict[str, str], cwd: str
) -> subprocess.Popen[bytes]:
    """Start a node in its own session (it outlives us), output appended to its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )


def descendants(pid: int) -> list[psutil.Process]:
    """The node's pool processes and anything they started."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def signal_main(pid: int, signum: int) -> bool:
    """Signal the node's main process only (never its pool: TERM there loses work)."""
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def kill_everything(pid: int, known: list[psutil.Process]) -> None:
    """SIGKILL the node's process group (its session), then any stray we knew of."""
    try:
        os.killpg(pid, signal.SIGKILL)  # the node is its session's and group's leader
    except (ProcessLookupError, PermissionError):
        pass
    for process in known:
        try:
            if process.is_running():
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


class Sampler:
    """CPU % and RSS of one node with its children; keeps psutil objects so CPU % has a baseline."""

    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}

    def sample(self, pid: int | None) -> tuple[float, int]:
        """Return (cpu percent, rss bytes) of the node and its descendants."""
        if pid is None:
            return 0.0, 0
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0.0, 0
        cpu, rss = 0.0, 0
        alive: dict[int, psutil.Process] = {}
        for member in members:
            cached = self._processes.get(member.pid, member)
            try:
                cpu += cached.cpu_percent(None)
                rss += cached.memory_info().rss
                alive[member.pid] = cached
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._processes = alive
        return cpu, rss
