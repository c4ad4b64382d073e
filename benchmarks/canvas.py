"""Time a group of N tasks and a chord of N header tasks on each broker, checking the results.

    .venv/bin/python benchmarks/canvas.py                     # redis, amqp and embedded, N=1,000
    .venv/bin/python benchmarks/canvas.py --broker amqp --size 5000 --concurrency 4

For each broker one tq node (prefork, -c CONCURRENCY) runs this module's own app. The group
is `group(add.s(i, i) for i in range(N))()` and the chord `chord(same, xsum.s())()`; each is
timed from the call to the last value in hand, split into "sent" (the call returned) and
"done" (get() returned the exact expected value). The module doubles as the worker's app
(`tq -A canvas`), so the task names are the same on both sides.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tq import App, chord, group

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: How long a run may take before it is reported as failed.
RESULT_TIMEOUT_S = 600.0
#: How long the node may take to print "ready".
READY_TIMEOUT_S = 30.0

app = App("canvas")


@app.task
def add(x, y):
    return x + y


@app.task
def xsum(numbers):
    return sum(numbers)


def start_node(concurrency: int, logfile: Path) -> subprocess.Popen[bytes]:
    """Start a tq node on this module's app and wait until it is ready."""
    command = [
        sys.executable, "-m", "tq", "-A", "canvas", "--workdir", str(HERE), "worker",
        "-c", str(concurrency), "-P", "prefork", "-l", "info", "--logfile", str(logfile),
        "-n", f"canvas-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]))
    node = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if logfile.exists() and " ready." in logfile.read_text():
            return node
        if node.poll() is not None:
            break
        time.sleep(0.05)
    stop_node(node)
    raise RuntimeError(
        f"the node did not start:\n{logfile.read_text() if logfile.exists() else ''}"
    )


def stop_node(node: subprocess.Popen[bytes]) -> None:
    """Warm-stop the node (TERM), killing it if it hangs."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout=20)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait(timeout=5)


def time_group(size: int) -> tuple[float, float]:
    """Return (seconds to send, seconds to the last value) for a group of `size` adds."""
    started = time.perf_counter()
    result = group(add.s(i, i) for i in range(size))()
    sent = time.perf_counter()
    values = result.get(timeout=RESULT_TIMEOUT_S)
    done = time.perf_counter()
    if values != [i + i for i in range(size)]:
        raise AssertionError("the group's values are wrong")
    return sent - started, done - started


def time_chord(size: int) -> tuple[float, float]:
    """Return (seconds to send, seconds to the body's value) for a chord of `size` adds."""
    started = time.perf_counter()
    result = chord((add.s(i, i) for i in range(size)), xsum.s())()
    sent = time.perf_counter()
    value = result.get(timeout=RESULT_TIMEOUT_S)
    done = time.perf_counter()
    if value != size * (size - 1):
        raise AssertionError(f"the chord's value is {value}, expected {size * (size - 1)}")
    return sent - started, done - started


def run_broker(name: str, size: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """Measure one broker; return its figures."""
    from brokers import PROFILES, check_broker, delete_run_queues

    profile = PROFILES[name]
    server = check_broker(profile)
    queue = f"canvas-{uuid.uuid4().hex[:8]}"
    for variable in [v for v in os.environ if v.startswith("TQ_")]:
        del os.environ[variable]
    os.environ["TQ_DEFAULT_QUEUE"] = queue
    os.environ["TQ_DATA_DIR"] = str(workdir / name)
    if profile.broker_url:
        os.environ["TQ_BROKER_URL"] = profile.broker_url
        os.environ["TQ_RESULT_BACKEND"] = str(profile.result_backend)
    app._reset_clients()
    node = start_node(concurrency, workdir / f"{name}.log")
    try:
        add.delay(1, 1).get(timeout=30)  # warm: connections, reply queue, pool processes
        group_sent, group_done = time_group(size)
        chord_sent, chord_done = time_chord(size)
    finally:
        stop_node(node)
        app.backend.close()
        delete_run_queues(profile, queue_names=[queue], run_id=queue)
    return {
        "server": server,
        "group_sent": group_sent,
        "group_done": group_done,
        "chord_sent": chord_sent,
        "chord_done": chord_done,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "amqp", "embedded", "all"], default="all")
    parser.add_argument("--size", type=int, default=1000, help="group members / chord header tasks")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes of the node")
    options = parser.parse_args()
    sys.path.insert(0, str(HERE))
    names = ["redis", "amqp", "embedded"] if options.broker == "all" else [options.broker]
    workdir = Path(tempfile.mkdtemp(prefix="tq-canvas-bench-"))
    failed = False
    print(f"group and chord of {options.size:,} tasks, one node -c {options.concurrency} (prefork)")
    print(f"{'broker':<10} {'server':<22} {'group sent':>11} {'group done':>11} "
          f"{'chord sent':>11} {'chord done':>11}")  # fmt: skip
    try:
        for name in names:
            try:
                figures = run_broker(name, options.size, options.concurrency, workdir)
            except Exception as exc:
                failed = True
                print(f"{name:<10} failed: {exc}")
                continue
            print(
                f"{name:<10} {figures['server']:<22} {figures['group_sent']:>10.2f}s "
                f"{figures['group_done']:>10.2f}s {figures['chord_sent']:>10.2f}s "
                f"{figures['chord_done']:>10.2f}s"
            )
    finally:
        if not failed:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"worker logs kept in {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
