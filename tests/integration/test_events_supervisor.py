"""The supervisor records the cluster's events; a console reading the log later sees what died."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.integration.supervised import cluster_for
from tq import states
from tq.cluster import LOST, ClusterState
from tq.eventlog import EventLog, writer_pid

pytestmark = pytest.mark.timeout(180)
HOST = socket.gethostname()
#: Seconds to wait for each thing the test expects to see in the log.
WAIT_S = 60.0


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    yield from cluster_for(tmp_path, monkeypatch)


def replayed(log_dir) -> ClusterState:
    """What a console started now would show: the log folded from its start."""
    state = ClusterState()
    for record in EventLog(log_dir).read():
        state.fold(record.event)
    return state


def test_supervisor_log_shows_a_killed_nodes_task_lost_then_redelivered(cluster) -> None:
    from tqtest import tasks

    log_dir = cluster.run_dir.parent / "events"
    cluster.tq("up", "1", "-c", "1", "-E", "--backoff-start=0.2")
    node = f"celery1@{HOST}"
    assert cluster.wait(lambda: writer_pid(log_dir) == cluster.supervisor_pid(), timeout=WAIT_S)
    # The recorder listens once the node's heartbeats reach the log.
    assert cluster.wait(lambda: node in replayed(log_dir).workers, timeout=WAIT_S)
    result = tasks.late_sleeper.delay("held", 2)

    def task_state() -> str | None:
        task = replayed(log_dir).tasks.get(result.id)
        return task.state if task else None

    assert cluster.wait(lambda: task_state() == states.STARTED, timeout=WAIT_S), task_state()
    os.kill(cluster.node("celery1")["pid"], signal.SIGKILL)
    # The supervisor's node-exited event, recorded by the supervisor itself, marks it LOST.
    assert cluster.wait(lambda: task_state() in (LOST, states.SUCCESS), timeout=WAIT_S)
    kinds = [record.event["type"] for record in EventLog(log_dir).read()]
    assert "node-started" in kinds and "node-exited" in kinds
    history = [name for name, _ in replayed(log_dir).tasks[result.id].timeline]
    assert LOST in history, history
    # Restarted, the node gets the acks_late task again and runs it.
    assert result.get(timeout=WAIT_S) == "held"
    assert cluster.wait(lambda: task_state() == states.SUCCESS, timeout=WAIT_S), task_state()
    cluster.tq("supervisor", "stop")
    assert cluster.wait(lambda: writer_pid(log_dir) is None, timeout=WAIT_S)


def test_no_record_events_turns_the_recorder_off(tmp_path) -> None:
    from tq.cli.main import CLIContext
    from tq.cli.supervise import _option_words, make_supervisor

    obj = CLIContext("tqtest", None, None, None)
    options = {
        "run_dir": str(tmp_path / "data" / "run"),
        "reload_": False,
        "log_max_bytes": 1 << 20,
        "log_backups": 1,
        "no_record_events": False,
    }
    recording = make_supervisor(obj, options, foreground=False)
    assert recording.recorder.app is not None
    assert recording.recorder.directory == tmp_path / "data" / "events"
    silent = make_supervisor(obj, {**options, "no_record_events": True}, foreground=False)
    assert silent.recorder.app is None
    assert "--no-record-events" in _option_words({**options, "no_record_events": True})
