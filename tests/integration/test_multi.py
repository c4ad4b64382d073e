"""`tq multi` with real worker processes on Redis: start, refuse, stopwait, queues, restart, kill."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, TESTS, kill_tq_tree

pytestmark = pytest.mark.timeout(180)
HOST = socket.gethostname()


class Multi:
    """Runs `tq multi` for one test (unique node names, files in tmp_path); kills what it left."""

    def __init__(self, tmp_path: Path) -> None:
        self.prefix = f"m{uuid.uuid4().hex[:6]}-"
        self.run_dir = tmp_path / "run"
        self.log_dir = tmp_path / "log"
        self.env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}")
        self.seen: set[int] = set()

    def tq(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), *args]
        return subprocess.run(
            command, cwd=TESTS, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def multi(self, command: str, *words: str) -> subprocess.CompletedProcess:
        """`tq multi COMMAND WORDS` with this test's node names and pid/log files."""
        result = self.tq(
            "multi",
            command,
            f"--range-prefix={self.prefix}",
            f"--pidfile={self.run_dir}/%n.pid",
            f"--logfile={self.log_dir}/%n%I.log",
            *words,
        )
        self.pids()
        return result

    def name(self, index: int) -> str:
        return f"{self.prefix}{index}@{HOST}"

    def pids(self) -> dict[str, int]:
        """Node short name -> pid, from the pid files."""
        found = {}
        for path in sorted(self.run_dir.glob("*.pid")) if self.run_dir.exists() else []:
            text = path.read_text().strip()
            if text.isdigit():
                found[path.stem] = int(text)
        self.seen.update(found.values())
        return found

    def ping(self, names: list[str], timeout: float = 30) -> dict:
        """Replies to `tq inspect ping` from these nodes, waiting until all answer."""
        deadline = time.monotonic() + timeout
        replies: dict = {}
        while time.monotonic() < deadline and set(replies) != set(names):
            result = self.tq("inspect", "ping", "--json", "-t", "1", "-d", ",".join(names))
            replies = json.loads(result.stdout) if result.returncode == 0 else {}
        return replies

    def cleanup(self) -> None:
        self.pids()
        for pid in self.seen:
            kill_tq_tree(pid)  # leaves a recycled pid alone


@pytest.fixture
def multi(redis_broker, tmp_path):
    handle = Multi(tmp_path)
    try:
        yield handle
    finally:
        handle.cleanup()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return not any(alive(pid) for pid in pids)


def test_start_three_then_refuse_a_second_start_then_stopwait(multi):
    started = multi.multi("start", "3", "-c", "1", "-l", "info")
    assert started.returncode == 0, started.stdout + started.stderr
    names = [multi.name(i) for i in (1, 2, 3)]
    assert "> Starting nodes..." in started.stdout
    for name in names:
        assert f"\t> {name}: OK" in started.stdout
    pids = multi.pids()
    assert sorted(pids) == [f"{multi.prefix}{i}" for i in (1, 2, 3)]
    assert all(alive(pid) for pid in pids.values())
    assert set(multi.ping(names)) == set(names)

    again = multi.multi("start", "3", "-c", "1")
    assert again.returncode == 1
    for name in names:
        pid = pids[name.split("@")[0]]
        assert f"\t> {name}: FAILED: already running (pid {pid})" in again.stdout, again.stdout
        assert alive(pid)
    assert multi.pids() == pids

    stopped = multi.multi("stopwait", "3")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "> Stopping nodes..." in stopped.stdout
    assert f"> Waiting for 3 nodes -> {', '.join(map(str, pids.values()))}" in stopped.stdout
    for name in names:
        assert f"\t> {name}: TERM -> {pids[name.split('@')[0]]}" in stopped.stdout
        assert f"\t> {name}: OK" in stopped.stdout
    assert not any(alive(pid) for pid in pids.values())
    assert multi.pids() == {}
    down = multi.multi("stop", "3")
    assert down.returncode == 0 and down.stdout.count(": DOWN") == 3


def test_per_node_queues_reach_the_workers(multi, redis_broker):
    images = redis_broker.q("images")
    started = multi.multi("start", "3", "-c", "1", "-Q:1,2", images)
    assert started.returncode == 0, started.stdout + started.stderr
    names = [multi.name(i) for i in (1, 2, 3)]
    assert set(multi.ping(names)) == set(names)
    for name, expected in zip(names, [images, images, redis_broker.queue], strict=True):
        result = multi.tq("inspect", "active_queues", "--json", "-t", "2", "-d", name)
        assert result.returncode == 0, result.stderr
        queues = json.loads(result.stdout)[name]
        assert [queue["name"] for queue in queues] == [expected]
    assert multi.multi("stopwait", "3").returncode == 0


def test_restart_gives_new_processes(multi):
    assert multi.multi("start", "2", "-c", "1").returncode == 0
    before = multi.pids()
    restarted = multi.multi("restart", "2", "-c", "1")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = multi.pids()
    assert sorted(after) == sorted(before)
    assert not set(after.values()) & set(before.values())
    assert all(alive(pid) for pid in after.values())
    assert not any(alive(pid) for pid in before.values())
    assert restarted.stdout.count(": OK") == 4  # two gone, two started
    assert multi.multi("stopwait", "2").returncode == 0


def test_kill_takes_the_node_and_its_pool_down_and_clears_pid_files(multi):
    assert multi.multi("start", "2", "-c", "2").returncode == 0
    pids = multi.pids()
    deadline = time.monotonic() + 20
    pool = []
    while time.monotonic() < deadline and len(pool) < 4:
        pool = [c.pid for pid in pids.values() for c in psutil.Process(pid).children()]
        time.sleep(0.1)
    killed = multi.multi("kill", "2")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    for name in (multi.name(1), multi.name(2)):
        assert f"Sending SIGKILL to node {name} ({pids[name.split('@')[0]]})" in killed.stdout
    assert wait_gone([*pids.values(), *pool])
    assert multi.pids() == {}


def test_stop_sends_the_signal_given_after_the_nodes(multi):
    assert multi.multi("start", "1", "-c", "1").returncode == 0
    [pid] = multi.pids().values()
    stopped = multi.multi("stop", "1", "-INT")
    assert stopped.returncode == 0
    assert f"\t> {multi.name(1)}: INT -> {pid}" in stopped.stdout
    assert wait_gone([pid])


def test_a_node_that_cannot_start_is_failed_with_the_workers_reason(multi):
    result = multi.multi("start", "1", "--", "--no-such-option")
    assert result.returncode == 1
    assert f"\t> {multi.name(1)}: FAILED: exited with code 2" in result.stdout
    assert "no-such-option" in result.stdout


def test_a_stale_pid_file_naming_another_program_does_not_block_start(multi):
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        multi.run_dir.mkdir(parents=True)
        (multi.run_dir / f"{multi.prefix}1.pid").write_text(f"{stranger.pid}\n")
        started = multi.multi("start", "1", "-c", "1")
        assert started.returncode == 0, started.stdout + started.stderr
        [pid] = multi.pids().values()
        assert pid != stranger.pid and stranger.poll() is None
        assert multi.multi("stopwait", "1").returncode == 0
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait(timeout=10)


def run_multi(*words: str) -> subprocess.CompletedProcess:
    """`tq -A proj multi ...` with no broker: the commands that only print."""
    return subprocess.run(
        [sys.executable, "-m", "tq", "-A", "proj", "multi", *words],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_show_names_expand_and_get_print_without_starting_anything():
    names = run_multi("names", "3", "-n", "box")
    assert (names.returncode, names.stdout) == (0, "celery1@box\ncelery2@box\ncelery3@box\n")
    shown = run_multi("show", "2", "-c", "2", "-Q:2", "x", "-n", "box", "--", "-E")
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[1].startswith(f"{sys.executable} -m tq -A proj worker -c 2 -Q x -n celery2@box")
    assert all(line.endswith(" -E") for line in lines)
    expanded = run_multi("expand", "%n-%h-%d-%N-%i-%I", "2", "-n", "vm")
    assert expanded.stdout.splitlines() == [
        "celery1-celery1@vm-vm-celery1-%i-%I",
        "celery2-celery2@vm-vm-celery2-%i-%I",
    ]
    got = run_multi("get", "celery2@box", "2", "-c", "2", "-n", "box")
    assert got.returncode == 0 and got.stdout.startswith("-m tq -A proj worker -c 2 -n celery2@box")


def test_exit_codes_unlike_celery_say_what_happened():
    assert run_multi("get", "nosuch@box", "2", "-n", "box").returncode == 1
    for words in (["start", "3", "--logfile", "/x"], ["show", "a", "b", "-c:1-2", "3"], ["bogus"]):
        result = run_multi(*words)
        assert result.returncode == 2, words
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
