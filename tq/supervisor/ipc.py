"""The supervisor's control socket: one JSON object per line each way, owner-only."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TQError

#: Longest request or reply line accepted, so garbage cannot make either side buffer forever.
MAX_LINE_BYTES = 1 << 20
SOCKET_NAME = "supervisor.sock"


class SupervisorNotRunning(TQError):
    """No supervisor answers on the run directory's socket."""


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def listen(run_dir: Path) -> socket.socket:
    """Bind the control socket with mode 0600 (created under a restrictive umask)."""
    path = socket_path(run_dir)
    if path.exists():
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.listen(16)
    server.setblocking(False)
    return server


def read_line(conn: socket.socket, timeout_s: float) -> bytes:
    """Read one newline-terminated line (or what came before EOF), bounded in size and time."""
    conn.settimeout(timeout_s)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > MAX_LINE_BYTES:
            break
    return b"".join(chunks).split(b"\n", 1)[0][:MAX_LINE_BYTES]


def decode_request(line: bytes) -> dict[str, Any]:
    """Parse a request line; raise ValueError with a readable reason for anything else."""
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"request is not a JSON line: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise ValueError('request must be a JSON object with a "cmd" string')
    for key, (check, wanted) in _FIELD_CHECKS.items():
        if request.get(key) is not None and not check(request[key]):
            raise ValueError(f"request field {key!r} must be {wanted}")
    return request


def _is_words(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(word, str) for word in value)


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


#: The type every known request field must have (a wrong one is refused before any command
#: reads it, so garbage can only ever earn an error reply).
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "argv": (_is_words, "a list of strings"),
    "nodes": (_is_words, "a list of node names"),
    "timeout": (_is_seconds, "a number of seconds >= 0"),
    "keep_nodes": (lambda value: isinstance(value, bool), "true or false"),
}


def send_line(conn: socket.socket, payload: dict[str, Any]) -> None:
    conn.sendall(json.dumps(payload, default=str).encode() + b"\n")


def request(run_dir: Path, payload: dict[str, Any], *, timeout_s: float = 30.0) -> dict[str, Any]:
    """Send one request to the supervisor and return its reply."""
    path = socket_path(run_dir)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout_s)
    try:
        client.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        client.close()
        raise SupervisorNotRunning(
            f"no supervisor is running for {run_dir}: start one with `tq -A proj up N` "
            "(or pass --run-dir if it uses another directory)"
        ) from None
    try:
        send_line(client, payload)
        line = read_line(client, timeout_s)
    finally:
        client.close()
    if not line:
        raise TQError(f"the supervisor for {run_dir} closed the connection without a reply")
    reply = json.loads(line)
    if not reply.get("ok", False):
        raise TQError(str(reply.get("error", "the supervisor refused the request")))
    return reply


def is_running(run_dir: Path) -> bool:
    """True when a supervisor answers a ping on this run directory."""
    try:
        request(run_dir, {"cmd": "ping"}, timeout_s=2.0)
        return True
    except (SupervisorNotRunning, TQError, OSError, ValueError):
        return False
