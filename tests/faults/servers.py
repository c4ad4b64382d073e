"""Servers a fault test owns (redis-server, a RabbitMQ node) on free loopback ports, to stop and start."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

#: How long a starting redis-server may take to answer, and a stopping one to exit.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def have_redis_server() -> bool:
    return shutil.which("redis-server") is not None


class OwnRedis:
    """A redis-server of the test's own, on its own loopback port, keeping data across restarts."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("own redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # A clean stop: the append-only file is complete.
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None


#: The RabbitMQ start script that runs the node as the current user (/usr/sbin's wrapper
#: switches to the rabbitmq user, which cannot read a test's tmp_path).
RABBITMQ_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)
#: How long a RabbitMQ node of the test's own may take to listen (first start: about 7 s idle).
RABBITMQ_START_TIMEOUT_S = 60.0
RABBITMQ_STOP_TIMEOUT_S = 30.0


def rabbitmq_script() -> str | None:
    """The rabbitmq-server script to run a node of our own with, or None when not installed."""
    return next((path for path in RABBITMQ_SCRIPTS if Path(path).exists()), None)


class RabbitMQDidNotStart(Exception):
    """Our own RabbitMQ node exited or did not listen in time (the message has its output)."""


class OwnRabbitMQ:
    """A RabbitMQ node of the test's own: own node name, ports, cookie, data, config, logs.

    It shares nothing with the machine's RabbitMQ but epmd (where it registers its own name).
    """

    def __init__(self, directory: Path, script: str) -> None:
        self.directory, self.script = directory, script
        self.port, self.dist_port = free_port(), free_port()
        self.nodename = f"tqfault-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "log.console = true\nlog.console.level = warning\n"
        )
        (directory / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        base = self.directory
        return dict(
            os.environ,
            HOME=str(base),  # its own Erlang cookie
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "plugins-expand"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(base / "feature_flags"),
            RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
        )

    def start(self) -> float:
        """Start the node in the foreground (same port and data as before); return seconds taken."""
        began = time.monotonic()
        self.starts += 1
        output = open(self.directory / f"start-{self.starts}.out", "wb")
        with output:
            self.process = subprocess.Popen(
                [self.script],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of our own, to clean up by its id
            )
        deadline = began + RABBITMQ_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return time.monotonic() - began
            except OSError:
                time.sleep(0.1)
        self.kill()
        tail = (self.directory / f"start-{self.starts}.out").read_text(errors="replace")[-800:]
        raise RabbitMQDidNotStart(
            f"own RabbitMQ {self.nodename} did not listen on {self.port} within "
            f"{RABBITMQ_START_TIMEOUT_S:.0f}s; its output ends: {tail.strip()}"
        )

    def stop(self) -> None:
        """A clean stop (TERM to our start script, which stops the node); kill it if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=RABBITMQ_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL our node's process group (the script, beam.smp and its helpers)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group start_new_session made
        except ProcessLookupError:
            pass
        self.process.wait(timeout=RABBITMQ_STOP_TIMEOUT_S)
        self.process = None
