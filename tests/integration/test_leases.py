"""A worker renews the claims of the messages it holds, on Redis and on the embedded broker.

Every consumer on a Redis broker (Celery's too) requeues the unacked messages claimed more than
visibility_timeout ago, taking them to be a dead consumer's; the embedded broker does the same
(besides requeueing a dead holder's at once). Without renewal an acks_late task running longer
than that (or an ETA task waiting longer) runs twice.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from kombu import Connection

from tests.conftest import ledger_lines, make_broker_env, own_redis_database

pytestmark = pytest.mark.timeout(120)

VISIBILITY_TIMEOUT_S = 1.0
#: A Redis database of this test's own: the restore below requeues every claim older than the
#: timeout in its database, and other tests (running in parallel) hold claims in theirs.
DATABASE = 13


@pytest.fixture
def own_database(redis_broker, monkeypatch):
    with own_redis_database(monkeypatch, DATABASE):
        yield redis_broker


def restore_expired_claims() -> None:
    """What every kombu or tq consumer does every 10 s: requeue claims older than the timeout."""
    options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    with Connection(os.environ["TQ_BROKER_URL"], transport_options=options) as connection:
        connection.default_channel.qos.restore_visible()


def test_a_task_running_past_the_visibility_timeout_is_not_handed_out_again(
    own_database, start_worker, tasks
):
    options = json.dumps({"visibility_timeout": VISIBILITY_TIMEOUT_S})
    # Two pool processes: one runs the task, the other would run a second copy of it.
    start_worker("-c", "2", env={"TQ_TEST_TRANSPORT_OPTIONS": options})
    result = tasks.late_sleep.delay("long", 4.0)
    deadline = time.monotonic() + 20
    while "long" not in ledger_lines(own_database) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.5 * VISIBILITY_TIMEOUT_S)  # the first claim is long past the timeout
    restore_expired_claims()
    assert result.get(timeout=20) == 1
    time.sleep(1.0)  # a second copy, if one had been requeued, would have started by now
    assert ledger_lines(own_database).count("long") == 1


def test_an_embedded_broker_task_running_past_the_visibility_timeout_runs_once(
    tmp_path, monkeypatch, start_worker, tasks
):
    broker = make_broker_env("embedded", tmp_path, monkeypatch)
    # The worker's own sweep (every 0.2 s here) would requeue its running task's message.
    options = {"visibility_timeout": VISIBILITY_TIMEOUT_S, "orphan_check_interval": 0.2}
    start_worker("-c", "2", env={"TQ_TEST_TRANSPORT_OPTIONS": json.dumps(options)})
    result = tasks.late_sleep.delay("long", 3.0)
    assert result.get(timeout=20) == 1
    time.sleep(1.0)  # a second copy, if one had been requeued, would have started by now
    assert ledger_lines(broker).count("long") == 1
