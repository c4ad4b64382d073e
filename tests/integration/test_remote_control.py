"""tq inspect / control / status against real workers: replies, and the worker really changing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT, TESTS, ledger_lines, wait_until
from tq import states
from tq.errors import TaskRevokedError

pytestmark = pytest.mark.timeout(120)


def tq(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}"),
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


NODE = f"rc@{socket.gethostname()}"


def replies(*args: str) -> dict:
    """Run a command against the test's node (named NODE), returning as soon as it answers."""
    return json.loads(tq(*args, "--json", "-t", "5", "-d", NODE).stdout)


@pytest.fixture
def node(start_worker):
    """Start the test's worker under the name NODE."""
    return lambda *args, **kw: start_worker(*args, name="rc@%h", **kw)


def test_status_ping_and_missing_destinations(broker, start_worker):
    start_worker("-c", "1", name="alpha@%h")
    start_worker("-c", "1", name="beta@%h")
    out = tq("status", "-t", "2").stdout
    # Other tests' workers may share the broker's broadcast exchange: look for ours only.
    assert f"alpha@{socket.gethostname()}: OK" in out and f"beta@{socket.gethostname()}: OK" in out
    assert "nodes online." in out
    host = socket.gethostname()
    result = tq("inspect", "ping", "-d", f"alpha@{host},ghost@{host}", "-t", "2")
    assert "pong" in result.stdout and "beta@" not in result.stdout
    assert f"No reply from: ghost@{host}" in result.stderr


def test_no_worker_answering_exits_69(broker):
    result = tq("status", "-t", "0.5", check=False)
    assert result.returncode == 69
    assert "No nodes replied within time constraint" in result.stderr


def test_inspect_active_reserved_scheduled_query_and_revoked(broker, node, tasks):
    node("-c", "1", "--prefetch-multiplier", "4")
    running = tasks.sleep_then.delay(8, "r")
    waiting = tasks.sleep_then.delay(0.1, "w")
    later = tasks.add.apply_async((1, 1), countdown=30)
    assert wait_until(lambda: any(replies("inspect", "active").values()))
    [active] = replies("inspect", "active").values()
    assert [item["id"] for item in active] == [running.id]
    assert active[0]["name"] == "tqtest.tasks.sleep_then" and active[0]["worker_pid"]
    [reserved] = replies("inspect", "reserved").values()
    assert [item["id"] for item in reserved] == [waiting.id]
    [scheduled] = replies("inspect", "scheduled").values()
    assert [item["request"]["id"] for item in scheduled] == [later.id]
    [found] = replies("inspect", "query_task", running.id, later.id).values()
    assert found[running.id][0] == "active" and found[later.id][0] == "scheduled"
    tasks.app.control.revoke(later.id)
    [revoked] = replies("inspect", "revoked").values()
    assert later.id in revoked
    with pytest.raises(TaskRevokedError):
        later.get(timeout=10)


def test_inspect_registered_stats_queues_conf_report_clock(broker, node, tasks):
    node("-c", "2")
    assert tasks.add.delay(1, 2).get(timeout=10) == 3
    [registered] = replies("inspect", "registered").values()
    assert "tqtest.tasks.add" in registered
    [stats] = replies("inspect", "stats").values()
    assert stats["total"] == {"tqtest.tasks.add": 1}
    assert len(stats["pool"]["processes"]) == 2 and stats["pool"]["max-concurrency"] == 2
    # the scheme, as Celery shows it (Flower displays it), whichever class serves it
    expected = {"amqp": "amqp", "redis": "redis", "embedded": "sqlite"}[broker.kind]
    assert stats["broker"]["transport"] == expected
    [queues] = replies("inspect", "active_queues").values()
    assert [queue["name"] for queue in queues] == [broker.queue]
    [conf] = replies("inspect", "conf").values()
    assert conf["result_extended"] is True
    if "broker_url" in conf and "@" in conf["broker_url"]:
        assert "guest:guest" not in conf["broker_url"]
    [report] = replies("inspect", "report").values()
    assert "tq:" in report["ok"]
    [clock] = replies("inspect", "clock").values()
    assert clock["clock"] > 0


def test_events_can_be_switched_on_and_off(broker, node, tasks):
    node("-c", "1")
    [reply] = replies("control", "enable_events").values()
    assert reply == {"ok": "task events enabled"}
    [reply] = replies("control", "enable_events").values()
    assert reply == {"ok": "task events already enabled"}
    [reply] = replies("control", "disable_events").values()
    assert reply == {"ok": "task events disabled"}


def test_pool_grow_and_shrink_change_the_processes(broker, node, tasks):
    worker = node("-c", "1")
    assert len(psutil.Process(worker.pid).children()) == 1
    replies("control", "pool_grow", "2")
    assert wait_until(lambda: len(psutil.Process(worker.pid).children()) == 3)
    [stats] = replies("inspect", "stats").values()
    assert stats["pool"]["max-concurrency"] == 3
    replies("control", "pool_shrink", "2")
    assert wait_until(lambda: len(psutil.Process(worker.pid).children()) == 1)
    assert tasks.add.delay(2, 2).get(timeout=10) == 4
    # tq scale: to a size, whatever the size now (the console's "scale node" as a command)
    assert tq("scale", NODE, "2").stdout.strip() == f"{NODE}: 1 -> 2 pool processes"
    assert wait_until(lambda: len(psutil.Process(worker.pid).children()) == 2)
    assert json.loads(tq("scale", NODE, "2", "--json").stdout)["reply"] == {}  # nothing to do
    missing = tq("scale", "nobody@nowhere", "2", "-t", "0.5", check=False)
    assert missing.returncode == 69 and "did not answer" in missing.stderr


def test_autoscale_needs_the_option_and_then_grows(broker, node, tasks):
    plain = node("-c", "1")
    [reply] = replies("control", "autoscale", "4", "2").values()
    assert "Autoscale not enabled" in reply["error"]
    plain.stop()
    worker = node("--autoscale", "3,1")
    assert len(psutil.Process(worker.pid).children()) == 1
    results = [tasks.sleep_then.delay(1.5, i) for i in range(6)]
    assert wait_until(lambda: len(psutil.Process(worker.pid).children()) == 3)
    assert [r.get(timeout=20) for r in results] == list(range(6))
    [reply] = replies("control", "autoscale", "2", "1").values()
    assert reply == {"ok": "autoscale now max=2 min=1"}


def test_rate_limit_slows_that_task(broker, node, tasks):
    node("-c", "2")
    [reply] = replies("control", "rate_limit", "tqtest.tasks.mark", "2/s").values()
    assert reply == {"ok": "new rate limit set successfully"}
    started = time.monotonic()
    results = [tasks.mark.delay(f"rl{i}") for i in range(5)]
    for result in results:
        result.get(timeout=20)
    assert time.monotonic() - started >= 1.5  # 5 tasks at 2/s: the first is free, 4 wait 0.5 s each
    [reply] = replies("control", "rate_limit", "tqtest.tasks.nope", "1/s").values()
    assert reply == {"error": "unknown task"}


def test_time_limit_is_applied_to_new_tasks(broker, node, tasks):
    node("-c", "1")
    [reply] = replies("control", "time_limit", "tqtest.tasks.soft_limited", "0.5", "5").values()
    assert reply == {"ok": "time limits set successfully"}
    assert tasks.soft_limited.delay(3).get(timeout=10) == "soft limit caught"


def test_revoke_terminate_kills_the_running_task(broker, node, tasks):
    worker = node("-c", "1")
    result = tasks.sleep_then.delay(30, "never")
    assert wait_until(lambda: any(replies("inspect", "active").values()))
    out = tq("control", "revoke", result.id, "--terminate", "--signal", "KILL", "-t", "2").stdout
    assert f"terminate: {result.id}" in out
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == states.REVOKED
    assert tasks.add.delay(1, 1).get(timeout=10) == 2  # the pool was refilled
    assert "Terminated task" in worker.log()


def test_add_and_cancel_consumer(broker, node, tasks):
    node("-c", "1")
    extra = broker.q("extra")
    [reply] = replies("control", "add_consumer", extra).values()
    assert reply == {"ok": f"add consumer {extra}"}
    assert tasks.add.apply_async((3, 4), queue=extra).get(timeout=10) == 7
    [reply] = replies("control", "cancel_consumer", extra).values()
    assert reply == {"ok": f"no longer consuming from {extra}"}
    time.sleep(0.3)
    ignored = tasks.mark.apply_async(("ignored-queue",), queue=extra)
    time.sleep(1.5)
    assert "ignored-queue" not in ledger_lines(broker)
    assert ignored.state == states.PENDING


def test_remote_shutdown_is_a_warm_stop(broker, node, tasks):
    worker = node("-c", "1")
    result = tasks.sleep_then.delay(1, "finished")
    time.sleep(0.3)
    tq("control", "shutdown")
    assert worker.process.wait(timeout=20) == 0
    assert result.get(timeout=10) == "finished"


def test_destructive_commands_can_be_refused(redis_broker, node, tasks):
    worker = node("-c", "1", env={"TQ_TEST_DESTRUCTIVE": "0"})
    [reply] = replies("control", "pool_shrink", "1").values()
    assert "refused" in reply["error"]
    result = tasks.sleep_then.delay(2, "survives")
    assert wait_until(lambda: any(replies("inspect", "active").values()))
    out = tq("control", "revoke", result.id, "--terminate", "-t", "2").stdout
    assert "refused" in out
    tq("control", "shutdown")
    assert result.get(timeout=10) == "survives"
    assert worker.process.poll() is None


def test_celery_style_inspect_object(broker, node, tasks):
    node("-c", "1")
    inspect = tasks.app.control.inspect(destination=[NODE], timeout=5)
    assert wait_until(lambda: inspect.stats() is not None)
    assert inspect.stats()[NODE]["pool"]["max-concurrency"] == 1
    assert inspect.active() == {NODE: []}
    nobody = tasks.app.control.inspect(destination=["nobody@nowhere"], timeout=0.3)
    assert nobody.active() is None  # as Celery: None when no worker answered
