"""A supervisor cluster for one test: `tq` commands on its own run directory, cleaned up after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT, TESTS, kill_tq_tree, make_broker_env


class Cluster:
    """Runs `tq` commands against one test's run directory and cleans up every process after."""

    def __init__(self, tmp_path: Path, env: dict[str, str], workdir: Path = TESTS) -> None:
        self.run_dir = tmp_path / "data" / "run"
        self.workdir = workdir
        self.env = dict(os.environ, **env, PYTHONPATH=f"{workdir}{os.pathsep}{ROOT}")
        self.broker: Any = None  # the BrokerState of make_broker_env

    def tq(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(self.workdir), *args],
                                cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, f"tq {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def ps(self) -> dict:
        return json.loads(self.tq("ps", "--json").stdout)

    def node(self, short: str) -> dict:
        [row] = [row for row in self.ps()["nodes"] if row["name"].split("@")[0] == short]
        return row

    def supervisor_pid(self) -> int | None:
        try:
            return int((self.run_dir / "supervisor.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def wait(self, predicate, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return predicate()

    def cleanup(self) -> None:
        pids = set()
        state = self.run_dir / "state.json"
        if state.exists():
            for entry in json.loads(state.read_text()).get("nodes", []):
                if entry.get("identity"):
                    pids.add(entry["identity"]["pid"])
        supervisor = self.supervisor_pid()
        self.tq("supervisor", "stop", check=False, timeout=90)
        # and any node of this test that the table lost track of (its pid file is in our run dir)
        for process in psutil.process_iter(["pid", "cmdline"]):
            if any(str(self.run_dir) in word for word in process.info["cmdline"] or ()):
                pids.add(process.info["pid"])
        for pid in [supervisor, *pids]:
            if not pid:
                continue
            kill_tq_tree(pid)


def cluster_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The body of each module's `cluster` fixture: an embedded-broker cluster, cleaned up after."""
    state = make_broker_env("embedded", tmp_path, monkeypatch)
    handle = Cluster(tmp_path, state.env)
    handle.broker = state
    yield handle
    handle.cleanup()
