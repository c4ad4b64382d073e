"""The supervisor's control requests: a JSON line in (ps up restart down kill stop), one out."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ..errors import TQError
from . import ipc
from .managed import FATAL, STOPPED
from .nodes import expand_nodes

if TYPE_CHECKING:
    from .daemon import Supervisor

#: How long a client may take to send its request line.
REQUEST_READ_TIMEOUT_S = 2.0
COMMANDS = ("ping", "ps", "up", "restart", "down", "kill", "stop")


def serve_client(supervisor: Supervisor, server: socket.socket) -> None:
    """Accept one client, answer its request, close; a bad request gets an error reply."""
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return
    with conn:
        try:
            request = ipc.decode_request(ipc.read_line(conn, REQUEST_READ_TIMEOUT_S))
            reply = handle(supervisor, request)
        except (ValueError, TQError) as exc:
            reply = {"ok": False, "error": str(exc)}
        except OSError:
            return
        try:
            ipc.send_line(conn, reply)
        except OSError:
            pass


def handle(supervisor: Supervisor, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one control request (raise ValueError or TQError for a bad one)."""
    cmd = request["cmd"]
    if cmd == "ping":
        return {"ok": True, "pid": os.getpid()}
    if cmd == "ps":
        return _ps(supervisor)
    if cmd == "up":
        return _up(supervisor, [str(word) for word in request.get("argv", [])])
    if cmd == "restart":
        names = [node.spec.name for node in supervisor.select(request.get("nodes"))]
        for node in supervisor.select(names):
            node.crashes.clear()
        supervisor.rolling.extend(name for name in names if name not in supervisor.rolling)
        return {"ok": True, "nodes": names}
    if cmd == "down":
        nodes = supervisor.select(request.get("nodes"))
        timeout_s = request.get("timeout")  # None: each node's own --stop-timeout
        for node in nodes:
            node.request_stop(None if timeout_s is None else float(timeout_s))
        supervisor.save_state()
        return {"ok": True, "nodes": [node.spec.name for node in nodes]}
    if cmd == "kill":
        nodes = supervisor.select(request.get("nodes"))
        for node in nodes:
            node.stop_requested = True
            node.kill()
        return {"ok": True, "nodes": [node.spec.name for node in nodes]}
    if cmd == "stop":
        supervisor.inbox.put(("stop", {"keep_nodes": bool(request.get("keep_nodes"))}))
        return {"ok": True, "pid": os.getpid()}
    raise ValueError(f"unknown command {cmd!r}: use {', '.join(COMMANDS)}")


def _ps(supervisor: Supervisor) -> dict[str, Any]:
    now = time.time()
    return {
        "ok": True,
        "supervisor_pid": os.getpid(),
        "run_dir": str(supervisor.run_dir),
        "nodes": [node.describe(now) for node in supervisor.nodes.values()],
    }


def _up(supervisor: Supervisor, argv: list[str]) -> dict[str, Any]:
    """`tq up` without arguments starts what is stopped; with arguments it sets the table."""
    if not argv:
        for node in supervisor.nodes.values():
            if node.state in (STOPPED, FATAL):
                node.crashes.clear()
                supervisor.start_node(node)
        return {"ok": True, "changes": {"started": list(supervisor.nodes)}}
    specs = expand_nodes(
        argv,
        pidfile=str(supervisor.run_dir / "%n.pid"),
        logfile=str(supervisor.log_dir / "%n%I.log"),
    )
    return {"ok": True, "changes": supervisor.apply_table(specs)}
