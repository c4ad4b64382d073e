"""Node actions from the console against a real supervisor: restart, stop and start a node."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from rich.text import Text
from textual.widgets import Static

from tests.conftest import ROOT, TESTS, kill_tq_tree, make_broker_env
from tq.cli.events import format_event
from tq.tui.app import ConsoleApp
from tq.tui.feed import EventFeed
from tq.tui.screens.node_detail import NodeDetailScreen
from tq.tui.widgets.node_table import NodeTable

from .test_console_live import Live


def run_tq(run_dir, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    command = [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), *args]
    return subprocess.run(
        [*command, f"--run-dir={run_dir}"], env=env, capture_output=True, text=True, timeout=90
    )


@pytest.fixture
def supervised(tmp_path, monkeypatch):
    """One supervised node on the embedded broker; every process it started is gone after."""
    make_broker_env("embedded", tmp_path, monkeypatch)
    run_dir = tmp_path / "run"
    started = run_tq(run_dir, "up", "1", "-c", "1", "-l", "info")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield run_dir
    finally:
        pids = []
        try:
            pids.append(int((run_dir / "supervisor.lock").read_text().split()[0]))
            state = json.loads((run_dir / "state.json").read_text())
            pids += [n["identity"]["pid"] for n in state["nodes"] if n.get("identity")]
        except (OSError, ValueError, IndexError, KeyError):
            pass
        run_tq(run_dir, "supervisor", "stop")
        for pid in pids:
            kill_tq_tree(pid)


def process_of(nodes: NodeTable, name: str) -> tuple[str, str]:
    """(state, pid) as the nodes view shows them."""
    return str(nodes.get_cell(name, "proc")), str(nodes.get_cell(name, "pid"))


@pytest.mark.timeout(120)
def test_console_restarts_stops_and_starts_a_supervised_node(supervised) -> None:
    async def scenario() -> None:
        console = ConsoleApp(EventFeed(format_event), run_dir=supervised)
        async with console.run_test(size=(160, 48)) as pilot:
            live = Live(console, pilot, node="")
            await pilot.press("2")
            nodes = console.query_one(NodeTable)
            await live.until(lambda: nodes.row_count == 1, "the supervised node")
            name = nodes.selected_node()
            assert name is not None and name.startswith("celery1@")
            state, first_pid = process_of(nodes, name)
            assert state == "RUNNING" and first_pid
            assert console.check_action("restart_node", ()) is True

            await pilot.press("i")  # the node's detail: its pool processes and its log
            await live.until(lambda: isinstance(console.screen, NodeDetailScreen), "node detail")
            detail = console.screen.query_one("#node-detail", Static)

            def shown() -> str:
                content = detail.content
                return content.plain if isinstance(content, Text) else str(content)

            await live.until(
                lambda: f"main    pid {first_pid}" in shown() and "pool 1" in shown(),
                "the main process and its pool process",
            )
            await live.until(lambda: "ready." in shown(), "the node's log tail")
            await pilot.press("escape")
            await live.until(lambda: not isinstance(console.screen, NodeDetailScreen), "back")

            await pilot.press("r")
            await live.confirm(f"Restart node {name}")
            await live.until(
                lambda: (
                    process_of(nodes, name)[0] == "RUNNING"
                    and process_of(nodes, name)[1] not in ("", first_pid)
                ),
                "the node running again under a new pid",
                timeout=60,
            )
            await pilot.press("x")
            await live.confirm(f"Stop node {name}")
            await live.until(lambda: process_of(nodes, name)[0] == "STOPPED", "STOPPED", 60)
            await pilot.press("s")
            await live.until(lambda: process_of(nodes, name)[0] == "RUNNING", "started", 60)

    asyncio.run(scenario())
