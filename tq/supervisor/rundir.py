"""The run directory: its permissions, the saved node table, stale pid files, a background start."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from ..errors import ConfigError, TQError
from . import ipc
from .managed import ManagedNode
from .nodes import NodeSpec

STATE_FILE = "state.json"


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the run directory owner-only; refuse one that belongs to someone else."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    info = run_dir.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"run directory {run_dir} belongs to uid {info.st_uid}, not you: refusing to use it"
        )
    os.chmod(run_dir, 0o700)
    return run_dir


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
    temporary.write_text(json.dumps({"nodes": entries}, indent=1))
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
    with open(run_dir / "supervisor.log", "ab") as log:
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
