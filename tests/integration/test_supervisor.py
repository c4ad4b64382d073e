"""The supervisor with real processes on the embedded broker: up, ps, restarts, FATAL, re-adoption."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, make_broker_env
from tests.integration.supervised import cluster_for

pytestmark = pytest.mark.timeout(180)
HOST = socket.gethostname()


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    yield from cluster_for(tmp_path, monkeypatch)


def test_up_starts_nodes_with_their_queues_and_levels(cluster):
    q = cluster.broker.queue
    out = cluster.tq("up", "4", "-Q:1,2", f"{q}.images", "-Q:3", f"{q}.data", "-L:3", "debug", "-Q", q,
                     "-c", "1").stdout
    for index in range(1, 5):
        assert f"> celery{index}@{HOST}: OK" in out
    rows = {row["name"]: row for row in cluster.ps()["nodes"]}
    assert [rows[f"celery{i}@{HOST}"]["state"] for i in range(1, 5)] == ["RUNNING"] * 4
    assert rows[f"celery1@{HOST}"]["queues"] == f"{q}.images"
    assert rows[f"celery3@{HOST}"]["queues"] == f"{q}.data" and rows[f"celery3@{HOST}"]["loglevel"] == "debug"
    assert rows[f"celery4@{HOST}"]["queues"] == q
    replies = json.loads(cluster.tq("inspect", "active_queues", "--json", "-t", "3").stdout)
    assert [queue["name"] for queue in replies[f"celery2@{HOST}"]] == [f"{q}.images"]
    assert [queue["name"] for queue in replies[f"celery4@{HOST}"]] == [q]
    from tqtest import tasks

    assert tasks.add.apply_async((2, 2), queue=f"{q}.data").get(timeout=20) == 4
    assert "DEBUG" in Path(rows[f"celery3@{HOST}"]["log"]).read_text()
    run_dir = cluster.run_dir
    assert stat.S_IMODE(os.stat(run_dir / "supervisor.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    table = cluster.tq("ps").stdout
    assert "NODE" in table and "RUNNING" in table and f"celery3@{HOST}" in table


def test_killed_node_is_restarted_with_backoff(cluster):
    cluster.tq("up", "1", "-c", "1", "--backoff-start=0.2")
    first = cluster.node("celery1")
    os.kill(first["pid"], signal.SIGKILL)
    assert cluster.wait(lambda: cluster.node("celery1")["state"] == "RUNNING"
                        and cluster.node("celery1")["pid"] != first["pid"])
    assert cluster.node("celery1")["restarts"] == 1
    # a crash loop becoming FATAL (beside a --restart=forever node): test_supervisor_policy.py


def test_supervisor_killed_nodes_survive_and_are_readopted(cluster):
    cluster.tq("up", "2", "-c", "1")
    pids = {row["name"]: row["pid"] for row in cluster.ps()["nodes"]}
    supervisor = cluster.supervisor_pid()
    os.kill(supervisor, signal.SIGKILL)
    psutil.Process(supervisor).wait(timeout=10) if psutil.pid_exists(supervisor) else None
    assert all(psutil.pid_exists(pid) for pid in pids.values())
    rows = cluster.ps()["nodes"]  # starts a new supervisor, which adopts the running nodes
    assert {row["name"]: row["pid"] for row in rows} == pids
    assert all(row["state"] == "RUNNING" for row in rows)
    assert cluster.supervisor_pid() != supervisor
    log = (cluster.run_dir / "supervisor.log").read_text()
    assert "adopted celery1@" in log


def test_recycled_pid_is_never_signalled(cluster):
    cluster.tq("up", "1", "-c", "1")
    cluster.tq("supervisor", "stop", "--keep-nodes")
    state_path = cluster.run_dir / "state.json"
    state = json.loads(state_path.read_text())
    node_pid = state["nodes"][0]["identity"]["pid"]
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(node_pid, signal.SIGKILL)
        state["nodes"][0]["identity"]["pid"] = stranger.pid  # as if the pid had been reused
        state_path.write_text(json.dumps(state))
        rows = cluster.ps()["nodes"]
        assert rows[0]["pid"] != stranger.pid
        assert cluster.wait(lambda: cluster.node("celery1")["state"] == "RUNNING")
        assert stranger.poll() is None, "the supervisor signalled a process that is not its node"
        assert "not signalled" in (cluster.run_dir / "supervisor.log").read_text()
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


def test_down_lets_running_tasks_finish(cluster):
    from tqtest import tasks

    cluster.tq("up", "1", "-c", "2")
    results = [tasks.sleep_then.delay(4, i) for i in range(2)]
    assert cluster.wait(lambda: cluster.node("celery1")["active"] == 2, timeout=30)  # both run now
    assert "ACT" in cluster.tq("ps").stdout
    down = cluster.tq("down", "--timeout", "30", "--json")
    assert f"celery1@{HOST}: DOWN" in down.stderr  # with --json, progress goes to stderr
    assert "task(s) still running" in down.stderr
    assert [r.get(timeout=10) for r in results] == [0, 1]
    [row] = json.loads(down.stdout)["nodes"]
    assert json.loads(down.stdout)["ok"] is True and row["state"] == "STOPPED" and row["pid"] is None


def test_second_supervisor_on_the_same_run_dir_refuses(cluster):
    cluster.tq("up", "1", "-c", "1")
    result = cluster.tq("supervisor", "run", f"--run-dir={cluster.run_dir}", check=False, timeout=30)
    assert result.returncode == 1
    assert "another supervisor is already running" in result.stderr
    garbage = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    garbage.connect(str(cluster.run_dir / "supervisor.sock"))
    garbage.sendall(b"\x00\xffnot json\n")
    reply = garbage.recv(4096)
    garbage.close()
    assert b"not a JSON line" in reply
    assert cluster.node("celery1")["state"] == "RUNNING"


def test_no_supervisor_says_how_to_start_one(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tq", "down", f"--run-dir={tmp_path / 'nothing'}"],
                            capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 1
    assert "no supervisor is running" in result.stderr and "tq -A proj up" in result.stderr
    assert "Traceback" not in result.stderr


# sd_notify under the foreground supervisor (READY, STATUS, WATCHDOG, drain): test_supervisor_systemd.py


APP_SOURCE = '''
from tq import App

app = App("reloadproj")


@app.task(name="reloadproj.version")
def version():
    return {value!r}
'''


def test_reload_restarts_nodes_when_a_task_file_changes(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "reloadproj.py").write_text(APP_SOURCE.format(value="v1"))
    state = make_broker_env("embedded", tmp_path, monkeypatch)
    env = dict(os.environ, **state.env, PYTHONPATH=f"{project}{os.pathsep}{ROOT}")

    def tq(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tq", "-A", "reloadproj", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)

    try:
        assert tq("up", "1", "-c", "1", "--reload").returncode == 0
        call = lambda: tq("call", "reloadproj.version", "--wait", "--timeout", "20").stdout.strip()  # noqa: E731
        assert call() == '"v1"'
        (project / "reloadproj.py").write_text(APP_SOURCE.format(value="v2"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and call() != '"v2"':
            time.sleep(0.5)
        assert call() == '"v2"'
        log = (tmp_path / "data" / "run" / "supervisor.log").read_text()
        assert "reloading: reloadproj.py changed" in log
    finally:
        tq("supervisor", "stop")


def test_log_rotation_keeps_every_line(cluster):
    from tqtest import tasks

    cluster.tq("up", "1", "-c", "2", "-l", "info", "--log-max-bytes=20000", "--log-backups=50")
    results = [tasks.add.delay(i, i) for i in range(400)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(400)]
    time.sleep(2.5)  # one rotation check
    results = [tasks.add.delay(i, 1) for i in range(400)]
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(400)]
    log = Path(cluster.node("celery1")["log"])
    files = [path for path in [log, *sorted(log.parent.glob(log.name + ".*"))] if path.exists()]
    assert len(files) >= 2, "the log was never rotated"
    text = "".join(path.read_text() for path in files)
    succeeded = {line.split("tqtest.tasks.add[", 1)[1].split("]", 1)[0] for line in text.splitlines()
                 if "tqtest.tasks.add[" in line and "succeeded" in line}
    assert len(succeeded) == 800


def test_the_seed_example_with_ten_nodes(cluster):
    q = cluster.broker.queue
    started = time.monotonic()
    out = cluster.tq("up", "10", "-Q:1-3", f"{q}.images,{q}.video", "-Q:4,5", f"{q}.data", "-Q", f"{q}.default",
                     "-L:4,5", "debug", "-c", "2").stdout
    assert out.count(": OK") == 10
    replies = json.loads(cluster.tq("inspect", "active_queues", "--json", "-t", "5",
                                    "-d", ",".join(f"celery{i}@{HOST}" for i in range(1, 11))).stdout)
    up_and_answering_s = time.monotonic() - started
    for index in range(1, 11):
        names = sorted(queue["name"] for queue in replies[f"celery{index}@{HOST}"])
        expected = ([f"{q}.images", f"{q}.video"] if index <= 3 else [f"{q}.data"] if index <= 5
                    else [f"{q}.default"])
        assert names == expected, (index, names)
    levels = {row["name"]: row["loglevel"] for row in cluster.ps()["nodes"]}
    assert [levels[f"celery{i}@{HOST}"] for i in range(1, 11)] == ["warning"] * 3 + ["debug"] * 2 + ["warning"] * 5
    print(f"tq up 10 until all nodes answer: {up_and_answering_s:.1f} s")


def test_node_lifecycle_events_reach_monitors(cluster):
    monitor = subprocess.Popen([sys.executable, "-m", "tq", "-A", "tqtest", "events", "--dump", "--json"],
                               cwd=cluster.workdir, env=cluster.env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        cluster.tq("up", "1", "-c", "1", "--backoff-start=0.2")
        os.kill(cluster.node("celery1")["pid"], signal.SIGKILL)
        assert cluster.wait(lambda: cluster.node("celery1")["restarts"] == 1)
        time.sleep(1.0)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=20)
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    kinds = [event["type"] for event in events if event["type"].startswith("node-")]
    assert "node-started" in kinds and "node-exited" in kinds and "node-restarted" in kinds, kinds
    exited = next(event for event in events if event["type"] == "node-exited")
    assert exited["node"] == f"celery1@{HOST}" and "SIGKILL" in exited["how"]
    assert exited["hostname"].startswith("supervisor@")


def test_sigusr1_makes_nodes_reopen_their_logs_for_logrotate(cluster):
    from tqtest import tasks

    cluster.tq("up", "1", "-c", "1", "-l", "info")
    log = Path(cluster.node("celery1")["log"])
    rotated = log.with_name(log.name + ".logrotate")
    os.replace(log, rotated)  # what an external logrotate does
    os.kill(cluster.supervisor_pid(), signal.SIGUSR1)
    time.sleep(0.5)
    assert tasks.add.delay(5, 5).get(timeout=20) == 10
    assert cluster.wait(lambda: log.exists() and "succeeded" in log.read_text(), timeout=10)
    report = json.loads(cluster.tq("logs", "celery1", "--json", "-n", "5").stdout)
    assert report["log"] == str(log) and any("succeeded" in line for line in report["lines"])


def test_up_again_with_other_arguments_changes_the_table(cluster):
    cluster.tq("up", "2", "-c", "1")
    first = {row["name"]: row["pid"] for row in cluster.ps()["nodes"]}
    out = cluster.tq("up", "1", "-c", "1").stdout  # celery2 goes away, celery1 is kept as it was
    assert f"celery1@{HOST}: OK" in out
    assert cluster.wait(lambda: [row["name"] for row in cluster.ps()["nodes"]] == [f"celery1@{HOST}"])
    assert cluster.node("celery1")["pid"] == first[f"celery1@{HOST}"]
    assert cluster.wait(lambda: not psutil.pid_exists(first[f"celery2@{HOST}"]), timeout=30)


def test_ps_after_a_deliberate_stop_does_not_start_a_supervisor(cluster):
    cluster.tq("up", "1", "-c", "1")
    cluster.tq("supervisor", "stop")
    result = cluster.tq("ps", check=False)
    assert result.returncode == 1 and "no supervisor is running" in result.stderr
    assert not (cluster.run_dir / "supervisor.sock").exists()


def test_every_supervisor_action_answers_in_json(cluster):
    name = f"celery1@{HOST}"
    up = json.loads(cluster.tq("up", "1", "-c", "1", "--json").stdout)
    assert up["ok"] is True and up["changes"]["added"] == [name]
    [row] = up["nodes"]
    assert row["name"] == name and row["state"] == "RUNNING" and row["policy"]["restart"] == "on-failure"
    restarted = json.loads(cluster.tq("restart", "celery1", "--json").stdout)
    assert restarted["ok"] is True and restarted["nodes"][0]["pid"] not in (None, row["pid"])
    assert json.loads(cluster.tq("kill", "celery1", "--json").stdout) == {"ok": True, "nodes": [name]}
    # tq down --json: test_down_lets_running_tasks_finish
    logs = json.loads(cluster.tq("logs", "celery1", "--json", "-n", "3").stdout)
    assert logs["node"] == name and len(logs["lines"]) <= 3
    supervisor = cluster.supervisor_pid()
    stop = json.loads(cluster.tq("supervisor", "stop", "--json").stdout)
    assert stop == {"ok": True, "pid": supervisor, "nodes_left_running": False}
