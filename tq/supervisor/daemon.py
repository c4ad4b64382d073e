"""The supervisor daemon: owns a machine's nodes, keeps them alive, answers on a Unix socket."""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import selectors
import signal
import socket
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import TQError
from . import ipc, process, requests
from .adoption import restore_table
from .loghealth import check_log
from .managed import BACKOFF, FATAL, RUNNING, STARTING, STOPPED, STOPPING, ManagedNode
from .nodes import NodeSpec
from .notices import NodeNotices
from .recorder import EventRecorder
from .rundir import (
    drain_pipe,
    prepare_private_dir,
    prepare_run_dir,
    save_table,
)
from .sdstatus import SystemdStatus

logger = logging.getLogger("tq.supervisor")

#: How often the loop looks at its nodes when nothing else wakes it.
TICK_S = 0.2
#: How often log sizes are checked for rotation.
ROTATE_CHECK_S = 2.0
LOCK_FILE = "supervisor.lock"
NOTIFY_SOCKET = "notify.sock"


class Supervisor:
    """One per run directory: the node table (each node with its restart policy), the socket."""

    def __init__(
        self,
        *,
        run_dir: Path,
        cwd: str,
        foreground: bool = False,
        reload: bool = False,
        log_max_bytes: int = 10 << 20,
        log_backups: int = 5,
        notices: NodeNotices | None = None,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.run_dir = prepare_run_dir(run_dir)
        self.log_dir = prepare_private_dir(run_dir.parent / "log", "log directory", tighten=False)
        self.cwd = cwd
        self.foreground = foreground
        self.reload = reload
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.notices = notices or NodeNotices(None)
        self.recorder = recorder or EventRecorder(None, run_dir.parent / "events")
        self.nodes: dict[str, ManagedNode] = {}
        self.rolling: deque[str] = deque()
        self.rolling_phase: tuple[str, str] | None = None
        self.stopping_all = False
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._lock_file: Any = None
        self.systemd = SystemdStatus(enabled=foreground)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- start-up --------------------------------------------------------------------------

    def lock(self) -> None:
        """Hold the run directory's lock for our lifetime: one supervisor per directory."""
        self._lock_file = open(self.run_dir / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TQError(
                f"another supervisor is already running for {self.run_dir} "
                "(talk to it with `tq ps`, or stop it with `tq supervisor stop`)"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()

    def node_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = str(self.run_dir / NOTIFY_SOCKET)
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        return env

    def load_state(self) -> list[str]:
        """Re-read the node table; adopt nodes still running (by identity). Return notes."""
        restored = restore_table(self.run_dir)
        for node in restored.nodes:
            self.nodes[node.spec.name] = node
        for node in restored.to_start:
            self.start_node(node)
        return restored.notes

    def save_state(self) -> None:
        save_table(self.run_dir, self.nodes.values())

    def start_node(self, node: ManagedNode) -> None:
        try:
            node.start(env=self.node_env(), cwd=self.cwd)
        except OSError as exc:
            node.state, node.last_exit = FATAL, f"cannot start: {exc}"
            self.notices.send("node-fatal", node=node.spec.name, reason=node.last_exit)
            return
        logger.info("started %s (pid %s)", node.spec.name, node.pid)
        self.notices.send("node-started", node=node.spec.name, pid=node.pid)

    def apply_table(self, specs: list[NodeSpec]) -> dict[str, list[str]]:
        """Make the node table equal to `specs`: add, change (restart), re-police, remove (stop)."""
        wanted = {spec.name: spec for spec in specs}
        changes: dict[str, list[str]] = {
            "added": [],
            "changed": [],
            "policy": [],
            "removed": [],
            "kept": [],
        }
        for name, node in list(self.nodes.items()):
            if name not in wanted:
                node.request_stop()
                node.remove_when_stopped = True
                changes["removed"].append(name)
        for name, spec in wanted.items():
            existing = self.nodes.get(name)
            if existing is None:
                node = self.nodes[name] = ManagedNode(
                    spec=spec, log_path=Path(spec.logfile.replace("%I", ""))
                )
                self.start_node(node)
                changes["added"].append(name)
            elif replace(existing.spec, policy=spec.policy) != spec:
                existing.spec = spec
                self.rolling.append(name)
                changes["changed"].append(name)
            else:  # the same command line (a new policy alone needs no restart)
                changes["policy" if existing.spec != spec else "kept"].append(name)
                existing.spec = spec
                if existing.state in (STOPPED, FATAL):
                    existing.crashes.clear()
                    self.start_node(existing)
        self.save_state()
        return changes

    def select(self, names: list[str] | None) -> list[ManagedNode]:
        if not names:
            return list(self.nodes.values())
        unknown = [name for name in names if self._resolve(name) is None]
        if unknown:
            raise TQError(
                f"no node named {', '.join(unknown)} (known: {', '.join(self.nodes) or 'none'})"
            )
        return [node for name in names if (node := self._resolve(name)) is not None]

    def _resolve(self, name: str) -> ManagedNode | None:
        if name in self.nodes:
            return self.nodes[name]
        matches = [node for full, node in self.nodes.items() if full.split("@", 1)[0] == name]
        return matches[0] if len(matches) == 1 else None

    # -- the loop --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        changed = False
        for name, node in list(self.nodes.items()):
            if node.state in (STARTING, RUNNING, STOPPING):
                how = node.exit_status()
                if how is not None:
                    event = node.on_exit(how, now)
                    changed = True
                    logger.warning("%s %s (%s)", name, event, how)
                    self.notices.send(f"node-{event}", node=name, how=how)
                    if node.remove_when_stopped:
                        del self.nodes[name]
                    continue
            if (
                node.state == STARTING
                and node.ready
                and now - (node.started_at or now) >= node.policy.start_secs
            ):
                node.state = RUNNING
                changed = True
            elif node.state == STOPPING and node.stop_deadline and now > node.stop_deadline:
                logger.warning(
                    "%s did not stop within %ss: killing its process group",
                    name,
                    node.policy.stop_timeout_s,
                )
                node.kill()
                node.stop_deadline = None
            elif (
                node.state == BACKOFF
                and node.retry_at
                and now >= node.retry_at
                and not self.stopping_all
            ):
                node.restarts += 1
                self.start_node(node)
                self.notices.send("node-restarted", node=name, pid=node.pid, restarts=node.restarts)
                changed = True
        self._advance_rolling()
        if changed:
            self.save_state()
        self.systemd.report(node.state for node in self.nodes.values())

    def _advance_rolling(self) -> None:
        if self.rolling_phase is None:
            if not self.rolling or self.stopping_all:
                return
            name = self.rolling.popleft()
            node = self.nodes.get(name)
            if node is None:
                return
            node.request_stop()
            self.rolling_phase = (name, "stopping")
        name, phase = self.rolling_phase
        current = self.nodes.get(name)
        if current is None:
            self.rolling_phase = None
        elif phase == "stopping" and current.state == STOPPED:
            current.crashes.clear()
            current.restarts += 1
            self.start_node(current)
            self.rolling_phase = (name, "starting")
        elif phase == "starting" and current.state in (RUNNING, FATAL, BACKOFF):
            self.rolling_phase = None

    def on_notify(self, data: bytes) -> None:
        """A node said READY=1 (sd_notify protocol, with its MAINPID)."""
        fields = dict(
            line.split("=", 1) for line in data.decode(errors="replace").splitlines() if "=" in line
        )
        pid = int(fields.get("MAINPID", "0") or 0)
        if fields.get("READY") == "1":
            for node in self.nodes.values():
                if node.pid == pid:
                    node.ready = True

    def post(self, what: str, payload: Any) -> None:
        """Hand work to the loop from a signal handler or another thread."""
        self.inbox.put((what, payload))
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def run(self, initial_argv: list[str] | None = None) -> int:
        """Serve until told to stop; return the exit code."""
        self.lock()
        self.recorder.start()  # appends the cluster's events to the durable log, in a thread
        server = ipc.listen(self.run_dir)
        notify_path = self.run_dir / NOTIFY_SOCKET
        if notify_path.exists():
            notify_path.unlink()
        notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_sock.bind(str(notify_path))
        notify_sock.setblocking(False)
        for note in self.load_state():
            logger.warning("%s", note)
        if initial_argv:
            requests.handle(self, {"cmd": "up", "argv": initial_argv})
        self.save_state()
        # TERM/INT: stop (warm); USR1: nodes reopen their logs (logrotate); HUP: rolling restart.
        signal.signal(signal.SIGTERM, lambda *_: self.post("stop", {}))
        signal.signal(signal.SIGINT, lambda *_: self.post("stop", {}))
        signal.signal(signal.SIGUSR1, lambda *_: self.post("reopen", {}))
        signal.signal(signal.SIGHUP, lambda *_: self.post("restart", {}))
        if self.reload:
            from .reload import watch_for_changes

            watch_for_changes(self.cwd, lambda path: self.post("reload", path))
        selector = selectors.DefaultSelector()
        selector.register(server, selectors.EVENT_READ, "client")
        selector.register(notify_sock, selectors.EVENT_READ, "notify")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        logger.warning("supervisor %d serving %s", os.getpid(), self.run_dir)
        last_rotate = 0.0
        keep_nodes = False
        try:
            while True:
                for key, _ in selector.select(TICK_S):
                    if key.data == "client":
                        requests.serve_client(self, server)
                    elif key.data == "notify":
                        self._drain_notify(notify_sock)
                    else:
                        drain_pipe(self._wake_r)
                keep_nodes = self._handle_inbox() or keep_nodes
                now = time.time()
                self.tick(now)
                if now - last_rotate > ROTATE_CHECK_S:
                    last_rotate = now
                    for node in self.nodes.values():
                        self.check_node_log(node)
                if self.stopping_all and (
                    keep_nodes
                    or all(node.state in (STOPPED, FATAL, BACKOFF) for node in self.nodes.values())
                ):
                    break
                if self.stopping_all and any(n.state == STOPPING for n in self.nodes.values()):
                    self.systemd.draining()
        finally:
            self.recorder.stop()
            if not keep_nodes:
                self.save_state()
            selector.close()
            server.close()
            notify_sock.close()
            for path in (ipc.socket_path(self.run_dir), notify_path):
                try:
                    path.unlink()
                except OSError:
                    pass
        logger.warning("supervisor %d stopped", os.getpid())
        return 0

    def check_node_log(self, node: ManagedNode) -> None:
        """Rotate a node's log when due (it reopens on HUP); note, once, when writing it fails."""
        rotated, error = check_log(node.log_path, self.log_max_bytes, self.log_backups)
        if rotated and node.pid:
            process.signal_main(node.pid, signal.SIGHUP)
        if error == node.log_error:
            return
        if error:
            logger.error("%s: %s (the node keeps running)", node.spec.name, error)
            self.notices.send("node-log-error", node=node.spec.name, error=error)
        else:
            logger.warning("%s: its log %s is writable again", node.spec.name, node.log_path)
        node.log_error = error

    def _drain_notify(self, sock: socket.socket) -> None:
        while True:
            try:
                self.on_notify(sock.recv(4096))
            except BlockingIOError:
                return

    def _handle_inbox(self) -> bool:
        keep_nodes = False
        while True:
            try:
                what, payload = self.inbox.get_nowait()
            except queue.Empty:
                return keep_nodes
            if what == "stop":
                keep_nodes = bool(payload.get("keep_nodes"))
                self.begin_stop_all(keep_nodes)
            elif what == "reopen":
                for node in self.nodes.values():
                    if node.pid:
                        process.signal_main(node.pid, signal.SIGHUP)
            elif what in ("restart", "reload"):
                if what == "reload":
                    logger.warning("reloading: %s changed", payload)
                    self.notices.send("node-reload", changed=str(payload))
                self.rolling.extend(name for name in self.nodes if name not in self.rolling)

    def begin_stop_all(self, keep_nodes: bool) -> None:
        self.stopping_all = True
        self.systemd.stopping()
        if keep_nodes:
            self.save_state()
            return
        for node in self.nodes.values():
            if node.state not in (STOPPED, FATAL, STOPPING):
                node.request_stop()
