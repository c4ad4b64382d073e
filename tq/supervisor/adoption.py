"""Re-adoption: rebuild the node table a previous supervisor saved, taking over its live nodes.

A saved pid is trusted only while the process behind it has the same start time and command line
(a recycled pid belongs to a stranger, which is never signalled); stale pid files are removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import process
from .managed import FATAL, STOPPED, ManagedNode
from .nodes import NodeSpec
from .rundir import STATE_FILE, remove_stale_pidfile


@dataclass
class RestoredTable:
    """The saved nodes (live ones adopted), which of them to start again, and what was noticed."""

    nodes: list[ManagedNode] = field(default_factory=list)
    to_start: list[ManagedNode] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def restore_table(run_dir: Path) -> RestoredTable:
    """Read the run directory's node table; adopt each node still running as itself."""
    restored = RestoredTable()
    path = run_dir / STATE_FILE
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return restored
    except (OSError, ValueError) as exc:
        restored.notes.append(f"ignored unreadable {path}: {exc}")
        return restored
    for entry in saved.get("nodes", []):
        spec = NodeSpec.from_saved(entry["spec"])
        node = ManagedNode(
            spec=spec, log_path=Path(entry["log_path"]), restarts=entry.get("restarts", 0)
        )
        restored.nodes.append(node)
        identity = entry.get("identity")
        wanted = entry.get("state") not in (STOPPED, FATAL)
        if identity:
            saved_identity = process.Identity(
                identity["pid"], identity["create_time"], tuple(identity["cmdline"])
            )
            if saved_identity.matches():
                node.adopt(saved_identity)
                restored.notes.append(f"adopted {spec.name} (pid {saved_identity.pid})")
                continue
            restored.notes.append(
                f"{spec.name}: pid {saved_identity.pid} is gone or belongs to another "
                "process now; not signalled"
            )
        remove_stale_pidfile(spec, restored.notes)
        node.state = STOPPED if wanted else entry.get("state", STOPPED)
        if wanted:
            restored.to_start.append(node)
    return restored
