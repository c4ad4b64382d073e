"""Fault-suite fixtures (the fault app on a test's own broker env, its ledger) and the fault table."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import pytest

from tests.conftest import REQUIRE_BROKERS, ROOT, BrokerEnv, WorkerProcess, reset_app_clients

from .ledger import LEDGER_ENV, FaultRow, Ledger, format_table
from .servers import (
    OwnRabbitMQ,
    RabbitMQDidNotStart,
    rabbitmq_script,
)

#: The key under which a test's row travels in its report (and from pytest-xdist workers).
ROW_PROPERTY = "fault_row"
#: Seconds the pool may take to be back to full size after a child died.
POOL_REFILL_TIMEOUT_S = 10.0


@dataclass
class FaultEnv:
    """One fault test's broker env, ledger and node names, with the fault app configured on it."""

    broker: BrokerEnv
    ledger: Ledger
    start_worker: Callable[..., WorkerProcess]
    tag: str

    def worker(self, *args: str, **kwargs: Any) -> WorkerProcess:
        """Start a `tq worker` of the fault app (a node name of this test's own)."""
        name = kwargs.pop("name", None) or f"fault-{self.tag}-{uuid.uuid4().hex[:4]}@%h"
        return self.start_worker(
            *args, app="tests.faults.faultapp", workdir=ROOT, name=name, **kwargs
        )


def configure_fault_app(broker: BrokerEnv, monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
    """Point the fault app (here and in workers started after) at this test's broker env."""
    from . import faultapp

    transport = dict(options)
    if broker.kind == "redis":
        # kombu keeps Redis unacked messages in keys shared by everyone on the database; a
        # prefix of our own keeps a short visibility timeout from touching other tests' work.
        transport.setdefault("global_keyprefix", f"{broker.queue}:")
    monkeypatch.setenv(faultapp.TRANSPORT_ENV, json.dumps(transport))
    faultapp.app.conf.update(broker_transport_options=transport)
    reset_fault_app()


def reset_fault_app() -> None:
    """Drop the fault app's cached connections so it reads the current environment."""
    from .faultapp import app

    reset_app_clients(app)


@pytest.fixture
def fault_env(broker: BrokerEnv, monkeypatch: pytest.MonkeyPatch, start_worker) -> FaultEnv:
    """The `broker` fixture (every broker) with the fault app and a fresh ledger."""
    return make_fault_env(broker, monkeypatch, start_worker)


def make_fault_env(
    broker: BrokerEnv, monkeypatch: pytest.MonkeyPatch, start_worker, **transport: Any
) -> FaultEnv:
    """A FaultEnv on `broker`, with these broker transport options for client and workers."""
    ledger_path = broker.tmp / "ledger.sqlite"
    monkeypatch.setenv(LEDGER_ENV, str(ledger_path))
    configure_fault_app(broker, monkeypatch, **transport)
    return FaultEnv(broker, Ledger(ledger_path).create(), start_worker, uuid.uuid4().hex[:6])


def pool_children(worker: WorkerProcess) -> list[int]:
    """The pids of a worker's pool processes (its direct children)."""
    try:
        return [
            child.pid
            for child in psutil.Process(worker.pid).children()
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        ]
    except psutil.NoSuchProcess:
        return []


def wait_pool_size(worker: WorkerProcess, size: int, *, without: int | None = None) -> list[int]:
    """Wait until the worker has `size` live pool processes (none of them `without`)."""
    deadline = time.monotonic() + POOL_REFILL_TIMEOUT_S
    children = pool_children(worker)
    while time.monotonic() < deadline:
        children = pool_children(worker)
        if len(children) == size and without not in children:
            return children
        time.sleep(0.05)
    raise AssertionError(f"pool has {children}, expected {size} processes (not {without})")


@pytest.fixture
def own_rabbitmq(tmp_path):
    """A RabbitMQ node of this test's own (never the machine's on 5672), started in tmp_path.

    No rabbitmq-server installed: skipped. Installed but not starting: skipped, or failed with
    TQ_REQUIRE_BROKERS=1 (a CI that promises brokers has a RabbitMQ that must start).
    """
    script = rabbitmq_script()
    if script is None:
        pytest.skip("rabbitmq-server is not installed (no /usr/lib/rabbitmq/bin/rabbitmq-server)")
    server = OwnRabbitMQ(tmp_path / "rabbitmq", script)
    try:
        server.start()
    except RabbitMQDidNotStart as exc:
        if REQUIRE_BROKERS:
            pytest.fail(f"{exc} (TQ_REQUIRE_BROKERS=1)")
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> Callable[[FaultRow], None]:
    """Report a test's row: printed now, and in the fault table at the end of the session."""

    def report(row: FaultRow) -> None:
        print(format_table([row]))
        request.node.user_properties.append((ROW_PROPERTY, asdict(row)))

    return report


_ROWS: list[FaultRow] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == ROW_PROPERTY:
            _ROWS.append(FaultRow(**value))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.section("fault table")
    terminalreporter.write_line(format_table(_ROWS))
