"""The foreground supervisor under systemd's eyes: sd_notify over a real NOTIFY_SOCKET, with a watchdog."""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.supervised import cluster_for

pytestmark = pytest.mark.timeout(180)
#: WatchdogSec=1 as systemd passes it: the supervisor must ping about every half second.
WATCHDOG_USEC = 1_000_000


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    yield from cluster_for(tmp_path, monkeypatch)


class NotifyListener:
    """What systemd would hear: every datagram on NOTIFY_SOCKET, with the time it arrived."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.heard: list[tuple[float, str]] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                self.heard.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    def messages(self) -> list[str]:
        return [text for _, text in list(self.heard)]

    def wait_for(self, needle: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in text for text in self.messages()):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self.sock.close()


def watchdog_pings(listener: NotifyListener) -> list[float]:
    return [moment for moment, text in list(listener.heard) if text == "WATCHDOG=1"]


def test_foreground_supervisor_speaks_sd_notify_with_watchdog_and_drain(cluster, tmp_path):
    from tqtest import tasks

    listener = NotifyListener(str(tmp_path / "notify.sock"))
    env = dict(cluster.env, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC=str(WATCHDOG_USEC))
    env.pop("WATCHDOG_PID", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(cluster.workdir), "up", "--foreground",
         "1", "-c", "1"], cwd=cluster.workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert listener.wait_for("READY=1"), listener.messages()
        [ready] = [text for text in listener.messages() if "READY=1" in text]
        assert "STATUS=1 running" in ready and f"MAINPID={process.pid}" in ready
        assert any(text.startswith("STATUS=1 starting") for text in listener.messages())
        result = tasks.sleep_then.delay(3, "drained")
        assert cluster.wait(lambda: cluster.node("celery1")["active"] == 1, timeout=30)
        assert cluster.wait(lambda: len(watchdog_pings(listener)) >= 4, timeout=30), listener.messages()
        pings = watchdog_pings(listener)
        process.send_signal(signal.SIGTERM)
        assert listener.wait_for("STOPPING=1"), listener.messages()
        assert listener.wait_for("EXTEND_TIMEOUT_USEC="), listener.messages()
        assert process.wait(timeout=60) == 0
        assert result.get(timeout=10) == "drained"  # the warm stop let the running task finish
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        listener.close()
    said = listener.messages()
    assert said.index("STOPPING=1") < next(i for i, text in enumerate(said) if text.startswith("EXTEND_"))
    assert "STATUS=1 stopping" in said
    # WATCHDOG=1 again and again, at about half of WATCHDOG_USEC: not on every 0.2 s loop tick,
    # and (most of the time) well within the watchdog period
    assert len(pings) >= 3, said
    gaps = [later - earlier for earlier, later in zip(pings, pings[1:], strict=False)]
    assert len(pings) - 1 <= (pings[-1] - pings[0]) / 0.4 + 1, gaps
    assert statistics.median(gaps) < WATCHDOG_USEC / 1e6, gaps
