"""The run directory: its permissions, the saved node table, stale pid files, a background start."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from ..errors import ConfigError, TQError
from . import ipc
from .managed import ManagedNode
from .nodes import NodeSpec

STATE_FILE = "state.json"
#: Run and log directories: only their owner may list or enter them.
PRIVATE_DIR_MODE = 0o700
#: Files the supervisor writes there (node table, its own log): only their owner may read them.
PRIVATE_FILE_MODE = 0o600


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the run directory owner-only; refuse one that belongs to someone else."""
    return prepare_private_dir(run_dir, "run directory")


def prepare_private_dir(path: Path, what: str, *, tighten: bool = True) -> Path:
    """Create a directory with mode 0700; refuse another user's, or a world-writable one.

    An existing directory is set to 0700 when `tighten` (the run directory is tq's alone);
    otherwise its mode is the owner's choice (a log directory shared with a group).
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} is not a directory: pick another (--run-dir)")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): "
            "refusing to use it; pick another with --run-dir (or TQ_RUN_DIR), or have its owner "
            "remove it"
        )
    if tighten:
        os.chmod(path, PRIVATE_DIR_MODE)
    elif info.st_mode & stat.S_IWOTH:
        raise ConfigError(
            f"{what} {path} is writable by every user: refusing to use it; "
            f"`chmod o-w {path}` (or pick another run directory with --run-dir)"
        )
    return path


def open_private(path: Path, flags: int) -> int:
    """Open (creating) a file that only its owner may read: mode 0600 from the first byte."""
    descriptor = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    os.fchmod(descriptor, PRIVATE_FILE_MODE)  # an older file made under a looser umask
    return descriptor


def save_table(run_dir: Path, nodes: Iterable[ManagedNode]) -> None:
    """Write the node table (specs, states, process identities) atomically."""
    entries = []
    for node in nodes:
        identity = asdict(node.identity) if node.identity else None
        entries.append(
            {
                "spec": asdict(node.spec),
                "log_path": str(node.log_path),
                "state": node.state,
                "restarts": node.restarts,
                "identity": identity,
            }
        )
    path = run_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_TRUNC), "w") as handle:
        handle.write(json.dumps({"nodes": entries}, indent=1))
    os.replace(temporary, path)


def drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def remove_stale_pidfile(spec: NodeSpec, notes: list[str]) -> None:
    path = Path(spec.pidfile)
    if path.exists():
        try:
            path.unlink()
            notes.append(f"removed stale pid file {path}")
        except OSError as exc:
            notes.append(f"cannot remove stale pid file {path}: {exc.strerror}")


def start_in_background(command: list[str], run_dir: Path, *, timeout_s: float = 15.0) -> None:
    """Start a detached supervisor and wait until it answers."""
    import subprocess

    prepare_run_dir(run_dir)
    with os.fdopen(
        open_private(run_dir / "supervisor.log", os.O_WRONLY | os.O_APPEND), "ab"
    ) as log:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ipc.is_running(run_dir):
            return
        if child.poll() is not None:
            lines = (run_dir / "supervisor.log").read_text(errors="replace").strip().splitlines()
            raise TQError(
                f"the supervisor exited at once: {lines[-1] if lines else 'no output'} "
                f"(see {run_dir / 'supervisor.log'})"
            )
        time.sleep(0.05)
    raise TQError(
        f"the supervisor did not answer within {timeout_s:.0f}s (see {run_dir / 'supervisor.log'})"
    )
