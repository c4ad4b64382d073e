"""Shared fixtures: real brokers, real worker processes, unique queues, cleanup by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.servers import OwnRedis, free_port, have_redis_server

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
EXAMPLES = ROOT / "examples"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

REQUIRE_BROKERS = os.environ.get("TQ_REQUIRE_BROKERS") == "1"

#: Each broker kind: (broker URL, result backend URL, host, port to probe).
BROKERS = {
    "amqp": ("amqp://guest:guest@127.0.0.1:5672//", "rpc://", "127.0.0.1", 5672),
    "redis": ("redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/4", "127.0.0.1", 6379),
    "embedded": (None, None, None, None),
}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_broker(kind: str) -> None:
    """Skip (or fail, with TQ_REQUIRE_BROKERS=1) when the broker's server is not answering."""
    _url, _backend, host, port = BROKERS[kind]
    if host is None or reachable(host, port):
        return
    message = f"{kind} broker not reachable on {host}:{port}"
    if REQUIRE_BROKERS:
        pytest.fail(message + " (TQ_REQUIRE_BROKERS=1)")
    pytest.skip(message)


@dataclass
class BrokerEnv:
    """Where one test's messages and results go."""

    kind: str
    queue: str
    env: dict[str, str]
    tmp: Path
    extra_queues: list[str] = field(default_factory=list)

    def q(self, suffix: str) -> str:
        """Return a queue name unique to this test."""
        name = f"{self.queue}.{suffix}"
        self.extra_queues.append(name)
        return name


@pytest.fixture(params=["amqp", "redis", "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real broker and backend, a unique default queue, applied to this process's env."""
    kind = request.param
    require_broker(kind)
    state = make_broker_env(kind, tmp_path, monkeypatch)
    yield state
    delete_queues(state)


@pytest.fixture
def redis_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Redis only: for behaviour that does not depend on the broker."""
    require_broker("redis")
    return make_broker_env("redis", tmp_path, monkeypatch)


@pytest.fixture
def amqp_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """RabbitMQ only."""
    require_broker("amqp")
    state = make_broker_env("amqp", tmp_path, monkeypatch)
    yield state
    delete_queues(state)


def make_broker_env(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BrokerEnv:
    url, backend, _host, _port = BROKERS[kind]
    queue = f"tqt-{uuid.uuid4().hex[:10]}"
    env = {
        "TQ_DEFAULT_QUEUE": queue,
        # Remote control and events of its own: tests running in parallel never see each
        # other's workers in a broadcast or an event stream.
        "TQ_CONTROL_EXCHANGE": queue,
        "TQ_EVENT_EXCHANGE": f"{queue}.ev",
        "TQ_DATA_DIR": str(tmp_path / "data"),
        "TQ_TEST_LEDGER": str(tmp_path / "ledger.txt"),
    }
    if url:
        env["TQ_BROKER_URL"] = url
        env["TQ_RESULT_BACKEND"] = backend
    for key in ("TQ_BROKER_URL", "TQ_RESULT_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_test_app()
    return BrokerEnv(kind=kind, queue=queue, env=env, tmp=tmp_path)


def reset_test_app() -> None:
    """Drop the test app's cached connections so it reads the new environment."""
    from tqtest.tq import app

    reset_app_clients(app)


@contextlib.contextmanager
def own_redis_database(monkeypatch: pytest.MonkeyPatch, number: int):
    """Point this process's broker at Redis database `number`, which only the calling test uses
    (restoring expired claims, or a broker gone silent, leaves claims behind in a database);
    empty it afterwards. Yields its URL."""
    import redis

    url = f"redis://127.0.0.1:6379/{number}"
    monkeypatch.setenv("TQ_BROKER_URL", url)
    reset_test_app()
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def reset_app_clients(app) -> None:
    """Close an app's backend and publisher and forget them: the next use reads the env."""
    for client in (app._backend, app._publisher):
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
    app._reset_clients()


def delete_queues(state: BrokerEnv) -> None:
    """Delete a test's durable queues on RabbitMQ (other brokers keep nothing of note)."""
    if state.kind != "amqp":
        return
    from kombu import Connection

    exchanges = [state.env["TQ_EVENT_EXCHANGE"], f"{state.env['TQ_CONTROL_EXCHANGE']}.pidbox"]
    exchanges.append(f"reply.{exchanges[1]}")
    try:
        with Connection(BROKERS["amqp"][0], connect_timeout=2) as connection:
            for name in [state.queue, *state.extra_queues]:
                channel = connection.channel()
                try:
                    channel.queue_delete(name)
                except Exception:
                    pass
            for name in exchanges:
                channel = connection.channel()
                try:
                    channel.exchange_delete(name)
                except Exception:
                    pass
    except Exception:
        pass


@dataclass
class WorkerProcess:
    """A real `tq worker` process started by a test."""

    process: subprocess.Popen
    logfile: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.logfile.read_text()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.process.returncode}) before {text!r}:\n{self.log()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in worker log after {timeout}s:\n{self.log()}")

    def wait_for_reconnection(self, *, lost_within: float, back_within: float = 30.0) -> None:
        """Wait until the worker logs a lost broker connection, then a second connect."""
        self.wait_for_log("Connection to broker lost", timeout=lost_within)
        deadline = time.monotonic() + back_within
        while self.log().count("Connected to") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.log().count("Connected to") >= 2, self.log()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the worker and wait for it to exit; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"worker {self.pid} did not stop within {timeout}s:\n{self.log()}"
            ) from None


def worker_children(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class FreezableProxy:
    """A TCP proxy to a broker whose open connections can go silent without closing, as when
    the broker's host vanishes from the network."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.frozen: list[socket.socket] = []
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.freeze_new = False
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target, timeout=5)
            self.pairs.append((client, upstream))
            if self.freeze_new:
                self.frozen += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._forward(source, sink)

    def _forward(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.2)
        while not self.stopped.is_set():
            if source in self.frozen:
                time.sleep(0.05)  # neither read nor forward: the peer hears nothing, no error
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            sink.sendall(data)

    def freeze(self, *, new_connections: bool = False) -> None:
        """Silence every connection open now; new ones pass unless new_connections (then the
        broker's host seems gone altogether)."""
        self.freeze_new = new_connections
        for client, upstream in self.pairs:
            self.frozen += [client, upstream]

    def drop_frozen(self) -> None:
        """Close the silenced connections at both ends: what they held never arrives (the
        broker's host is back, its old connections gone); new connections pass."""
        self.freeze_new = False
        frozen, self.frozen = self.frozen, []
        for sock in frozen:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.stopped.set()
        for client, upstream in self.pairs:
            client.close()
            upstream.close()
        self.server.close()


@pytest.fixture
def freezable_proxy() -> Iterator[Callable[[tuple[str, int]], FreezableProxy]]:
    """Open FreezableProxy objects to a broker (host, port); each is closed after the test."""
    opened: list[FreezableProxy] = []

    def open_proxy(target: tuple[str, int]) -> FreezableProxy:
        proxy = FreezableProxy(target)
        opened.append(proxy)
        return proxy

    yield open_proxy
    for proxy in opened:
        proxy.close()


@pytest.fixture
def tasks():
    """The test app's tasks (tests/tqtest), configured by the broker fixture's environment."""
    from tqtest import tasks

    return tasks


@pytest.fixture
def start_worker(tmp_path: Path):
    """Start `tq -A <app> worker` processes; every one is stopped (by pid) after the test."""
    started: list[WorkerProcess] = []

    def start(
        *args: str,
        app: str = "tqtest",
        workdir: Path = TESTS,
        env: dict[str, str] | None = None,
        name: str | None = None,
        ready: bool = True,
    ) -> WorkerProcess:
        logfile = tmp_path / f"worker-{len(started)}.log"
        command = [
            sys.executable,
            "-m",
            "tq",
            "-A",
            app,
            "--workdir",
            str(workdir),
            "worker",
            "-l",
            "info",
            "--logfile",
            str(logfile),
            "-n",
            name or f"w{len(started)}-{uuid.uuid4().hex[:6]}@%h",
            *args,
        ]
        process_env = dict(os.environ, **(env or {}))
        process_env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(ROOT)])
        process = subprocess.Popen(
            command,
            env=process_env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"worker-{len(started)}.err", "w"),
        )
        handle = WorkerProcess(process, logfile)
        started.append(handle)
        if ready:
            handle.wait_for_log(" ready.")
        return handle

    yield start
    for handle in started:
        children = worker_children(handle.pid)
        if handle.process.poll() is None:
            handle.process.send_signal(signal.SIGQUIT)
            try:
                handle.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                handle.process.kill()
                handle.process.wait(timeout=10)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def kill_tq_tree(pid: int) -> None:
    """SIGKILL a tq process a test started, and its children; a pid reused by another program
    (its command line does not name tq) is left alone."""
    import psutil

    try:
        process = psutil.Process(pid)
        if "tq" in " ".join(process.cmdline()):
            for child in process.children(recursive=True):
                child.kill()
            process.kill()
    except psutil.Error:
        pass


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (free loopback port, append-only file in tmp_path)."""
    if not have_redis_server():
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


def fresh_python_output(code: str) -> list[str]:
    """Run `code` in a new interpreter (nothing imported yet) and return its printed words."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05) -> bool:
    """Poll predicate until it holds or `timeout` seconds pass; return its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def ledger_lines(broker: BrokerEnv) -> list[str]:
    path = Path(broker.env["TQ_TEST_LEDGER"])
    return path.read_text().split() if path.exists() else []
