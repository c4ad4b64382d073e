"""Security defaults with real processes: secrets masked wherever they could show, a private
supervisor run directory, another user's run directory refused, destructive control switchable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import BROKERS, ROOT, TESTS, kill_tq_tree
from tq.errors import TQError
from tq.supervisor import ipc

pytestmark = pytest.mark.timeout(120)

KEY = "masked-signing-key-0123456789abcdef"
PASSWORD_URL = BROKERS["amqp"][0]  # amqp://guest:guest@127.0.0.1:5672//
PASSWORD = "guest:guest"
#: The user the tests act as when they need "someone else" (nobody, on Debian).
OTHER_UID = 65534
HOST = socket.gethostname()


def tq(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}", **env),
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert process.poll() is None, f"exited before {text!r}:\n{content}"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}")


def test_passwords_and_signing_key_are_masked_and_destructive_control_can_be_refused(
    amqp_broker, tmp_path
):
    from tqtest import tasks

    node = f"sec-{uuid.uuid4().hex[:6]}@{HOST}"
    banner_path, log_path = tmp_path / "banner.txt", tmp_path / "worker.log"
    env = {"TQ_MESSAGE_SIGNING_KEY": KEY, "TQ_WORKER_ALLOW_DESTRUCTIVE_CONTROL": "0"}
    with open(banner_path, "w") as banner_out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS)]
            + ["-b", PASSWORD_URL, "worker", "-l", "info", "-c", "1", "-n", node]
            + ["--logfile", str(log_path)],
            stdout=banner_out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}", **env),
        )
    try:
        wait_for_text(log_path, " ready.", worker)
        conf = json.loads(tq("inspect", "conf", "--json", "-t", "5", "-d", node, env={}).stdout)
        control = tasks.app.control  # the rest in-process: one CLI call is enough
        report = json.dumps(control.inspect("report", destination=[node], timeout=5))
        control.shutdown(destination=[node])  # shutdown sends no reply: see the log
        wait_for_text(log_path, "refused remote shutdown", worker)
        shrink = json.dumps(control.pool_shrink(1, destination=[node], timeout=5))
        assert worker.poll() is None, "a refused shutdown stopped the worker"
        assert len(psutil.Process(worker.pid).children()) == 1, "a refused pool_shrink shrank"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    banner, log = banner_path.read_text(), log_path.read_text()
    [node_conf] = conf.values()
    assert node_conf["broker_url"] == "amqp://guest:**@127.0.0.1:5672//"
    assert node_conf["message_signing_key"] == "**"
    assert "amqp://guest:**@127.0.0.1:5672//" in banner and "amqp://guest:**@" in report
    assert ".> signing:     HMAC-SHA256 (unsigned messages refused)" in banner
    assert "Connected to amqp://guest:**@127.0.0.1:5672//" in log
    assert "refused remote shutdown: worker_allow_destructive_control is off" in log
    assert "pool_shrink refused: worker_allow_destructive_control is off" in shrink
    for shown in (banner, log, json.dumps(conf), report, shrink):
        assert PASSWORD not in shown and KEY not in shown


def public_base() -> Path:
    """A directory others may enter (pytest's tmp is 0700), so only tq's own modes protect."""
    base = Path(tempfile.mkdtemp(prefix="tq-sec-"))
    base.chmod(0o755)
    return base


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_other_user(paths: list[Path]) -> dict[str, str]:
    """Try, as OTHER_UID, to read each file (or connect to each socket): path -> what happened."""
    script = (
        "import json, socket, sys\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        if path.endswith('.sock'):\n"
        "            socket.socket(socket.AF_UNIX).connect(path)\n"
        "        else:\n"
        "            open(path).read()\n"
        "        out[path] = 'read'\n"
        "    except PermissionError:\n"
        "        out[path] = 'denied'\n"
        "    except OSError as exc:\n"
        "        out[path] = repr(exc)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        ["/usr/bin/python3", "-c", script, *map(str, paths)],
        user=OTHER_UID,
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_supervisor_files_are_owner_only_and_ps_shows_no_password(amqp_broker, monkeypatch):
    base = public_base()
    data_dir, run_dir = base / "data", base / "data" / "run"
    env = {"TQ_DATA_DIR": str(data_dir)}
    node = f"sec{uuid.uuid4().hex[:6]}"
    try:
        tq("-b", PASSWORD_URL, "up", node, "-c", "1", f"--run-dir={run_dir}", env=env)
        table = tq("ps", f"--run-dir={run_dir}", env=env).stdout
        rows = ipc.request(run_dir, {"cmd": "ps"})  # what `tq ps --json` prints
        [row] = rows["nodes"]
        assert row["state"] == "RUNNING" and node in table
        assert PASSWORD not in table and PASSWORD not in json.dumps(rows)
        # The URL reached the node through its environment, not its public command line.
        node_process = psutil.Process(row["pid"])
        for process in [node_process, *node_process.children(recursive=True)]:
            assert PASSWORD not in " ".join(process.cmdline()), process.cmdline()
        assert node_process.environ()["TQ_BROKER_URL"] == PASSWORD_URL
        log_dir = data_dir / "log"
        node_log, pidfile = Path(row["log"]), run_dir / f"{node}.pid"
        assert node_log.parent == log_dir and pidfile.exists()
        assert mode(run_dir) == 0o700 and mode(log_dir) == 0o700
        for private in ("supervisor.sock", "state.json", "supervisor.log"):
            assert mode(run_dir / private) == 0o600, private
        public = base / "public.txt"  # proves the other user can read what is not private
        public.write_text("hello")
        public.chmod(0o644)
        secrets = [node_log, pidfile, run_dir / "state.json", run_dir / "supervisor.sock"]
        attempts = as_other_user([public, *secrets])
        assert attempts.pop(str(public)) == "read"
        assert set(attempts.values()) == {"denied"}, attempts
    finally:
        stop_supervisor(run_dir)
        shutil.rmtree(base, ignore_errors=True)


def stop_supervisor(run_dir: Path) -> None:
    """Stop the supervisor and its nodes; kill by pid whatever is left."""
    pids = []
    try:
        pids.append(int((run_dir / "supervisor.lock").read_text().split()[0]))
        state = json.loads((run_dir / "state.json").read_text())
        pids += [entry["identity"]["pid"] for entry in state["nodes"] if entry.get("identity")]
    except (OSError, ValueError, IndexError, KeyError):
        pass
    try:
        ipc.request(run_dir, {"cmd": "stop"}, timeout_s=10)
        psutil.wait_procs([psutil.Process(pid) for pid in pids[:1]], timeout=30)
    except (OSError, ValueError, TQError, psutil.Error):
        pass
    for pid in pids:
        kill_tq_tree(pid)


@pytest.mark.parametrize(
    ("directory", "problem", "needle"),
    [
        ("run", "owned", f"run directory {{}} belongs to uid {OTHER_UID}, not to you"),
        ("log", "owned", f"log directory {{}} belongs to uid {OTHER_UID}, not to you"),
        ("log", "world-writable", "log directory {} is writable by every user"),
    ],
    ids=["run-owned", "log-owned", "log-world-writable"],
)
def test_supervisor_refuses_another_users_or_a_world_writable_directory(
    tmp_path, directory, problem, needle
):
    if problem == "owned" and os.getuid() != 0:
        pytest.skip("needs root to chown a directory to another user")
    data_dir = tmp_path / "data"
    target = data_dir / directory
    target.mkdir(parents=True)
    if problem == "owned":
        os.chown(target, OTHER_UID, OTHER_UID)
    else:
        target.chmod(0o777)
    env = {"TQ_DATA_DIR": str(data_dir)}
    result = tq("supervisor", "run", f"--run-dir={data_dir / 'run'}", env=env, check=False)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert needle.format(target) in line and "refusing to use it" in line
    assert "Traceback" not in result.stderr
    assert not (data_dir / "run" / "supervisor.sock").exists()


class _Planted:
    """A pickle that creates a file when it is loaded: proof that a result was unpickled."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self):
        return (Path.touch, (self.proof,))


def test_result_reads_refuse_pickle_unless_accepted(redis_broker, tmp_path):
    import pickle

    import redis
    from kombu.exceptions import ContentDisallowed

    from tq import App

    backend_url = BROKERS["redis"][1]
    task_id = f"planted-{uuid.uuid4().hex}"
    proof = tmp_path / "unpickled"
    planted = pickle.dumps({"status": "SUCCESS", "result": _Planted(proof), "task_id": task_id})
    store = redis.Redis.from_url(backend_url)
    store.set(f"celery-task-meta-{task_id}", planted, ex=60)
    try:
        # A client that reads pickle results but accepts only JSON (the default accept_content).
        reader = App("reader", backend=backend_url, result_serializer="pickle")
        with pytest.raises(ContentDisallowed):
            reader.AsyncResult(task_id).get(timeout=5)
        assert not proof.exists()
        opted_in = App(
            "opted-in", backend=backend_url, result_serializer="pickle", accept_content=["pickle"]
        )
        opted_in.AsyncResult(task_id).get(timeout=5)
        assert proof.exists()  # the same read with pickle accepted does unpickle it
    finally:
        store.delete(f"celery-task-meta-{task_id}")
        store.close()
