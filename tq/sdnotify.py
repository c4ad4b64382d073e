"""The sd_notify protocol: tell a supervisor (systemd, or tq's own) how a process is doing."""

from __future__ import annotations

import os
import socket


def notify(state: str, *, socket_path: str | None = None) -> bool:
    """Send a state ("READY=1", "STATUS=...") to $NOTIFY_SOCKET; False when nobody listens."""
    path = socket_path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # '@' names an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def ready(status: str | None = None) -> bool:
    """Say the process is up (with its main pid, for supervisors that did not fork it)."""
    lines = ["READY=1", f"MAINPID={os.getpid()}"]
    if status:
        lines.append(f"STATUS={status}")
    return notify("\n".join(lines))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def extend_timeout(usec: int) -> bool:
    """Ask for more time to start or stop (systemd's EXTEND_TIMEOUT_USEC)."""
    return notify(f"EXTEND_TIMEOUT_USEC={int(usec)}")


def watchdog_interval_s() -> float | None:
    """Half the watchdog period systemd asked for (WATCHDOG_USEC), or None."""
    value = os.environ.get("WATCHDOG_USEC")
    if not value or not value.isdigit():
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(value) / 2_000_000
