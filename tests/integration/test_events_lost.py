"""A task running on a worker that dies shows LOST in the cluster state, then its redelivery."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from tq import states
from tq.cluster import LOST, ClusterState
from tq.events import receive_events

pytestmark = pytest.mark.timeout(120)

#: Seconds to wait for each state the test expects.
WAIT_S = 30.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what} within {timeout}s")


def test_a_sigkilled_workers_acks_late_task_shows_lost_then_success_elsewhere(
    amqp_broker, start_worker
) -> None:
    from tqtest import tasks
    from tqtest.tq import app

    state = ClusterState()
    lock = threading.Lock()
    connected = threading.Event()
    stop = threading.Event()

    def fold(event: dict) -> None:
        with lock:
            state.fold(event)

    def on_connection(up: bool) -> None:
        if up:
            connected.set()

    receiver = threading.Thread(
        target=receive_events,
        args=(app, fold),
        kwargs={"is_cancelled": stop.is_set, "on_connection": on_connection},
        daemon=True,
    )
    receiver.start()

    def task_state(task_id: str) -> tuple[str | None, str | None]:
        with lock:
            # The console's refresh tick does this once a second; here, on every look.
            state.expire_workers(time.time())
            task = state.tasks.get(task_id)
            return (task.state, task.worker) if task else (None, None)

    try:
        assert connected.wait(WAIT_S), "the event receiver never connected"
        tag = uuid.uuid4().hex[:6]
        doomed = start_worker("-c", "1", "-E", name=f"doomed{tag}@%h")
        result = tasks.late_sleeper.delay(f"lost-{tag}", 3)
        wait_for(lambda: task_state(result.id)[0] == states.STARTED, "the task STARTED")
        first_worker = task_state(result.id)[1]
        assert first_worker and first_worker.startswith(f"doomed{tag}@")
        doomed.stop(signal.SIGKILL)
        # No goodbye from a SIGKILLed worker: its heartbeats stop, and after 2 x freq ...
        wait_for(lambda: task_state(result.id)[0] == LOST, "the task LOST")
        start_worker("-c", "1", "-E", name=f"rescuer{tag}@%h")
        assert result.get(timeout=WAIT_S) == f"lost-{tag}"
        wait_for(lambda: task_state(result.id)[0] == states.SUCCESS, "the task SUCCESS")
        assert task_state(result.id)[1].startswith(f"rescuer{tag}@")
        with lock:
            timeline = [name for name, _ in state.tasks[result.id].timeline]
        # (The rescuer may take the waiting task before its events are connected, so its
        # received/started can be missing: success alone completes the task.)
        assert timeline.index(LOST) < timeline.index(states.SUCCESS), timeline
    finally:
        stop.set()
        receiver.join(timeout=10)
