"""Fault: many tasks, about 5 % of attempts failing, retried with back-off: exact accounting.

Which attempt of which task fails is a seeded draw (faultapp.attempt_fails), so the test
knows beforehand how every task ends and how often it runs. Results, the ledger and the
task events a monitor (ClusterState) folds must all agree with that, to the task.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tq import states
from tq.cluster import ClusterState
from tq.events import EventReceiver

from .conftest import make_fault_env
from .ledger import FaultRow

pytestmark = pytest.mark.timeout(180)

#: The issue's size: about 17 s here when run alone.
SENT = 10000
CONCURRENCY = 4
RESULT_TIMEOUT_S = 150.0
#: How long the test waits for the last events after the last result.
EVENTS_TIMEOUT_S = 30.0


def expected_runs(key: str) -> tuple[str, int]:
    """(final state, number of executions) the seeded failures give task `key`."""
    from .faultapp import FLAKY_MAX_RETRIES, attempt_fails

    for attempt in range(FLAKY_MAX_RETRIES + 1):
        if not attempt_fails(key, attempt):
            return states.SUCCESS, attempt + 1
    return states.FAILURE, FLAKY_MAX_RETRIES + 1


class EventWatch:
    """A monitor in a thread: folds this test's task events into a ClusterState and counts them."""

    def __init__(self, app, node: str) -> None:
        self.app, self.node = app, node
        self.state = ClusterState(max_tasks=SENT * 2)
        self.counts: Counter[str] = Counter()
        self.ids: set[str] = set()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self.ready.wait(10), "event receiver did not start"

    def _on_event(self, event: dict) -> None:
        if event.get("hostname") != self.node or not event["type"].startswith("task-"):
            return  # the event exchange is shared: other tests' nodes publish there too
        with self._lock:
            self.counts[event["type"]] += 1
            self.state.fold(event)

    def _run(self) -> None:
        with self.app.broker_connection() as connection:
            receiver = EventReceiver(
                connection, self._on_event, exchange_name=self.app.conf.event_exchange
            )
            receiver.consume()
            self.ready.set()
            while not self._stop.is_set():
                receiver.drain(timeout=0.2)
            receiver.close()

    def snapshot(self) -> tuple[Counter[str], dict[str, str]]:
        with self._lock:
            return Counter(self.counts), {i: t.state for i, t in self.state.tasks.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_retries_with_backoff_exact_accounting(redis_broker, monkeypatch, start_worker, fault_row):
    from . import faultapp

    env = make_fault_env(redis_broker, monkeypatch, start_worker)
    node = f"fault-retry-{env.tag}@faults"
    watch = EventWatch(faultapp.app, node)
    watch.start()
    try:
        env.worker("-c", str(CONCURRENCY), "-E", name=node)
        keys = [f"f{i}" for i in range(SENT)]
        expected = {key: expected_runs(key) for key in keys}
        results = {key: faultapp.flaky.delay(key) for key in keys}
        metas = faultapp.app.backend.wait_for_many(
            [result.id for result in results.values()], timeout=RESULT_TIMEOUT_S
        )
        final = {key: metas[result.id]["status"] for key, result in results.items()}
        want_states = {key: state for key, (state, _runs) in expected.items()}
        want_runs = {key: runs for key, (_state, runs) in expected.items()}
        succeeded = sum(1 for state in want_states.values() if state == states.SUCCESS)
        failed = SENT - succeeded
        retried = sum(want_runs.values()) - SENT
        want_events = {
            "task-succeeded": succeeded,
            "task-failed": failed,
            "task-retried": retried,
            "task-started": SENT + retried,
            "task-received": SENT + retried,
        }
        deadline = time.monotonic() + EVENTS_TIMEOUT_S
        counts, event_states = watch.snapshot()
        while time.monotonic() < deadline and any(
            counts[kind] < n for kind, n in want_events.items()
        ):
            time.sleep(0.1)
            counts, event_states = watch.snapshot()
    finally:
        watch.stop()
    starts = env.ledger.starts()
    fault_row(
        FaultRow(
            f"{SENT} tasks, ~5 % of attempts fail, retried with back-off",
            "redis",
            sent=SENT,
            executed=sum(starts.values()),
            succeeded=sum(1 for state in final.values() if state == states.SUCCESS),
            failed=sum(1 for state in final.values() if state == states.FAILURE),
            duplicated=env.ledger.duplicated(),
            lost=sum(1 for state in final.values() if state not in states.READY_STATES),
        )
    )
    assert 0 < failed and 0 < retried  # the seeds do exercise both paths
    # Results: every task ends as its seeds say.
    assert final == want_states
    # Ledger: every task ran exactly as often as its seeds say; nothing ran twice.
    assert dict(starts) == want_runs and env.ledger.duplicated() == 0
    # Events: a monitor counts the same, and folds every task to the same final state.
    assert {kind: counts[kind] for kind in want_events} == want_events
    assert {i: event_states.get(i) for i in (r.id for r in results.values())} == {
        results[key].id: state for key, state in want_states.items()
    }
