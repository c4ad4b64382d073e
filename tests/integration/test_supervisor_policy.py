"""Per-node restart policy with real processes: --restart:N=forever beside the default, in one table."""

from __future__ import annotations

import json
import os
import signal
import socket

import psutil
import pytest

from tests.integration.supervised import cluster_for

pytestmark = pytest.mark.timeout(180)
HOST = socket.gethostname()


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    yield from cluster_for(tmp_path, monkeypatch)


def test_forever_node_keeps_retrying_while_its_default_sibling_goes_fatal(cluster):
    # Both nodes get an option the worker rejects, so each exits at once, again and again; the
    # back-off starts at 20 ms (per node, like the rest of the policy) to keep the loop short.
    result = cluster.tq("up", "2", "-c", "1", "--max-tasks-per-child=zero", "--backoff-start=0.02",
                        "--restart:1=forever", "--json", check=False, timeout=90)
    assert result.returncode == 1 and json.loads(result.stdout)["ok"] is False
    assert "FAILED" in result.stderr  # with --json the progress lines go to stderr
    assert cluster.wait(lambda: cluster.node("celery2")["state"] == "FATAL", timeout=90)
    assert cluster.wait(lambda: cluster.node("celery1")["restarts"] > 6, timeout=90)
    rows = {row["name"]: row for row in cluster.ps()["nodes"]}
    forever, default = rows[f"celery1@{HOST}"], rows[f"celery2@{HOST}"]
    assert forever["state"] in ("BACKOFF", "STARTING"), forever
    assert forever["policy"] == {"restart": "forever", "start_secs": 1.0, "stop_timeout_s": 60.0,
                                 "backoff_start_s": 0.02}
    assert default["policy"]["restart"] == "on-failure"
    assert default["restarts"] == 5  # six crashes within 60 s: the sixth is FATAL
    assert "max-tasks-per-child" in "\n".join(default["fatal_log"])
    log = (cluster.run_dir / "supervisor.log").read_text()
    assert f"celery2@{HOST} fatal" in log and f"celery1@{HOST} fatal" not in log
    table = cluster.tq("ps").stdout
    assert "celery2" in table and "is FATAL" in table and "max-tasks-per-child" in table


def test_a_new_policy_alone_changes_no_process_and_survives_readoption(cluster):
    cluster.tq("up", "2", "-c", "1")
    pids = {row["name"]: row["pid"] for row in cluster.ps()["nodes"]}
    reply = json.loads(cluster.tq("up", "2", "-c", "1", "--restart:2=forever", "--stop-timeout:2=5",
                                  "--json").stdout)
    assert reply["ok"] is True
    assert reply["changes"]["policy"] == [f"celery2@{HOST}"]
    assert reply["changes"]["kept"] == [f"celery1@{HOST}"] and reply["changes"]["changed"] == []
    assert {row["name"]: row["pid"] for row in reply["nodes"]} == pids  # nothing restarted
    # the table remembers each node's policy, also for a supervisor that re-adopts the nodes
    supervisor = cluster.supervisor_pid()
    os.kill(supervisor, signal.SIGKILL)
    psutil.Process(supervisor).wait(timeout=10) if psutil.pid_exists(supervisor) else None
    rows = {row["name"]: row for row in cluster.ps()["nodes"]}
    assert cluster.supervisor_pid() != supervisor
    assert {name: row["pid"] for name, row in rows.items()} == pids
    assert rows[f"celery2@{HOST}"]["policy"]["restart"] == "forever"
    assert rows[f"celery2@{HOST}"]["policy"]["stop_timeout_s"] == 5.0
    assert rows[f"celery1@{HOST}"]["policy"]["restart"] == "on-failure"


def test_a_bad_policy_is_refused_before_any_supervisor_starts(cluster):
    result = cluster.tq("up", "2", "--restart:2=always", check=False)
    assert result.returncode == 2 and "--restart=always: use on-failure or forever" in result.stderr
    assert "Traceback" not in result.stderr and not (cluster.run_dir / "supervisor.sock").exists()
