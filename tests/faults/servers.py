"""Servers a fault test owns: a redis-server on a free loopback port that it may stop and start."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
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
