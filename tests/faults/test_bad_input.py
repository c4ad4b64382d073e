"""Fault 8, bad input: each bad message is rejected with one log line, the worker keeps serving
and nothing is lost; garbage on the supervisor's socket earns an error, and `tq ps` still works.

One worker serves every case: a good task is sent before and after each bad message, and the
ledger (a file, not the broker) shows that each good task ran exactly once.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, ledger_lines
from tests.faults.ledger import FaultRow
from tq import states
from tq.protocol import build_task_message
from tq.supervisor import ipc

pytestmark = pytest.mark.timeout(120)

#: The worker's message size limit in this test (the default is 64 MiB).
MAX_MESSAGE_BYTES = 64 * 1024
#: How long one case may take to settle (the good task after it has run, its log line written).
CASE_TIMEOUT_S = 20.0
MARK = "tqtest.tasks.mark"


@dataclass
class Case:
    """One bad input: how to send it, the log line that must show, and what it must not run."""

    name: str
    send: Callable[[str], None]  # called with a fresh task id
    log_needle: Callable[[str], str]  # the text of its one log line, given the task id
    must_not_run: str | None = None  # a ledger entry that would prove the bad message ran


def publish_raw(body, *, headers, content_type="application/json", content_encoding="utf-8"):
    """Publish exactly this body and these headers to the test's default queue."""
    from tqtest import tasks

    with tasks.app.broker_connection() as connection:
        queue = tasks.app.default_queue()
        connection.Producer().publish(
            body,
            exchange="",
            routing_key=queue.name,
            declare=[queue],
            headers=headers,
            content_type=content_type,
            content_encoding=content_encoding,
        )


def mark_headers(task_id: str, args: list, **changes) -> dict:
    message = build_task_message(task_id=task_id, name=MARK, args=args)
    return dict(message.headers, **changes)


def json_body(args: list) -> str:
    import json

    return json.dumps([args, {}, {}])


def send_unknown(task_id: str) -> None:
    from tqtest import tasks

    tasks.app.send_task("tqtest.tasks.no_such_task", ("ghost",), task_id=task_id)


def send_undecodable(task_id: str) -> None:
    publish_raw('[["undecodable-ran"], {', headers=mark_headers(task_id, ["undecodable-ran"]))


def send_pickle(task_id: str) -> None:
    publish_raw(
        pickle.dumps([["pickle-ran"], {}, {}]),
        headers=mark_headers(task_id, ["pickle-ran"]),
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )


def send_missing_id(task_id: str) -> None:
    headers = mark_headers(task_id, ["no-id-ran"])
    del headers["id"]
    publish_raw(json_body(["no-id-ran"]), headers=headers)


def send_wrong_arg_count(task_id: str) -> None:
    # The client refuses a wrong call (typing), so send the raw message another client could.
    publish_raw(json_body(["a", "b", "c"]), headers=mark_headers(task_id, ["a", "b", "c"]))


def send_oversized(task_id: str) -> None:
    big = "x" * (MAX_MESSAGE_BYTES + 1)
    publish_raw(json_body([big]), headers=mark_headers(task_id, [big]))


def send_protocol_v1(task_id: str) -> None:
    import json

    body = {"task": MARK, "id": task_id, "args": ["v1-ran"], "kwargs": {}}
    publish_raw(json.dumps(body), headers={})


def send_bad_header_types(task_id: str) -> None:
    headers = mark_headers(task_id, ["bad-types-ran"], timelimit=["soon", "later"])
    publish_raw(json_body(["bad-types-ran"]), headers=headers)


def send_log_injection(task_id: str) -> None:
    headers = mark_headers(task_id, ["injected-ran"], id=f"{task_id}\nFORGED log line")
    publish_raw(json_body(["injected-ran"]), headers=headers)


CASES = [
    Case(
        "unknown task name",
        send_unknown,
        lambda tid: f"unregistered task of type 'tqtest.tasks.no_such_task' (id '{tid}')",
    ),
    Case(
        "undecodable body",
        send_undecodable,
        lambda tid: f"['{tid}']: the message cannot be decoded (content type 'application/json')",
        "undecodable-ran",
    ),
    Case(
        "refused content type (pickle)",
        send_pickle,
        lambda tid: (
            f"['{tid}']: the message cannot be decoded "
            "(content type 'application/x-python-serialize')"
        ),
        "pickle-ran",
    ),
    Case(
        "missing 'id' header",
        send_missing_id,
        lambda tid: "'task' and 'id' must be non-empty strings",
        "no-id-ran",
    ),
    Case(
        "wrong argument count",
        send_wrong_arg_count,
        lambda tid: f"Task {MARK}[{tid}] raised unexpected: TypeError",
    ),
    Case(
        "oversized message",
        send_oversized,
        lambda tid: (
            f"['{tid}']: the message is {MAX_MESSAGE_BYTES + 15} bytes, "
            f"over worker_max_message_bytes ({MAX_MESSAGE_BYTES})"
        ),
    ),
    Case(
        "protocol v1 message",
        send_protocol_v1,
        lambda tid: "protocol v1 messages are not supported",
        "v1-ran",
    ),
    Case(
        "header of the wrong type",
        send_bad_header_types,
        lambda tid: f"task {MARK}[{tid}]: header 'timelimit' must be [hard, soft] seconds",
        "bad-types-ran",
    ),
    Case(
        "task id with a newline",
        send_log_injection,
        lambda tid: (
            f"must be non-empty strings of printable characters (at most 255), "
            f"got '{MARK}' and '{tid}\\nFORGED log line'"
        ),
        "injected-ran",
    ),
]


def wait_for(predicate: Callable[[], bool], timeout: float = CASE_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(case) for case, _, _ in rows)
    print(f"\n{'case':<{width}}  {'outcome':<28}  log line")
    for case, outcome, line in rows:
        print(f"{case:<{width}}  {outcome:<28}  {line[:110]}")


def test_bad_input_is_rejected_with_one_log_line_and_the_worker_keeps_serving(
    redis_broker, start_worker, tmp_path, fault_row
):
    from tqtest import tasks

    worker = start_worker("-c", "1", env={"TQ_WORKER_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES)})
    rows: list[tuple[str, str, str]] = []
    for index, case in enumerate(CASES):
        task_id = f"bad-{index}-{uuid.uuid4().hex[:8]}"
        tasks.mark.delay(f"before-{index}")
        case.send(task_id)
        after = tasks.mark.delay(f"after-{index}")
        assert after.get(timeout=CASE_TIMEOUT_S) == f"after-{index}", case.name
        needle = case.log_needle(task_id)
        seen = wait_for(lambda needle=needle: needle in worker.log())
        assert seen, f"{case.name}: {needle!r} not in log"
        lines = [line for line in worker.log().splitlines() if needle in line]
        assert len(lines) == 1, f"{case.name}: {lines}"
        if case.must_not_run:
            assert case.must_not_run not in ledger_lines(redis_broker), case.name
        outcome = "rejected, worker serving"
        if case.name == "wrong argument count":
            failed = tasks.app.AsyncResult(task_id)
            assert failed.state == states.FAILURE
            assert isinstance(failed.get(propagate=False, timeout=5), TypeError)
            outcome = "FAILURE (TypeError), serving"
        rows.append((case.name, outcome, lines[0].split("] ", 1)[-1]))

    counts = Counter(ledger_lines(redis_broker))
    good = [f"{when}-{index}" for index in range(len(CASES)) for when in ("before", "after")]
    for name in good:
        assert counts[name] == 1, counts
    assert not any(line.startswith("FORGED") for line in worker.log().splitlines())
    assert worker.process.poll() is None

    rows.append(supervisor_socket_case(tmp_path / "sup"))
    print_table(rows)
    ran = sum(counts[name] for name in good)
    fault_row(
        FaultRow(
            fault=f"bad input ({len(CASES)} bad messages, socket garbage)",
            broker="redis",
            sent=len(good),
            executed=ran,
            succeeded=ran,
            failed=0,
            duplicated=ran - sum(1 for name in good if counts[name]),
            lost=sum(1 for name in good if not counts[name]),
        )
    )


def supervisor_socket_case(home: Path) -> tuple[str, str, str]:
    """Write garbage and half a JSON line to a supervisor's socket; `tq ps` must still work."""
    run_dir = home / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQ_DATA_DIR=str(home))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "tq", "supervisor", "run", f"--run-dir={run_dir}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: ipc.is_running(run_dir)), "the supervisor did not answer"
        replies = [
            exchange(run_dir, b"\x00\xff garbage \xfe\n"),
            exchange(run_dir, b"[1, 2, 3]\n"),
            exchange(run_dir, b'{"cmd": "ps", "nod'),  # half a line, then the client hangs up
            exchange(run_dir, b'{"cmd": "down", "timeout": [1]}\n'),
            exchange(run_dir, b'{"cmd": "restart", "nodes": 7}\n'),
            exchange(run_dir, b'{"cmd": "rm -rf /"}\n'),
            exchange(run_dir, b"{" * 100_000 + b"\n"),
        ]
        for reply in replies:
            assert reply == b"" or reply.startswith(b'{"ok": false, "error": '), reply
        assert b"not a JSON line" in replies[0] and b"unknown command" in replies[5]
        assert b"'timeout' must be a number" in replies[3] and b"'nodes'" in replies[4]
        ps = subprocess.run(
            [sys.executable, "-m", "tq", "ps", f"--run-dir={run_dir}", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ps.returncode == 0 and '"nodes": []' in ps.stdout, ps.stderr
        assert supervisor.poll() is None
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=20)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait(timeout=10)
    errors = sum(reply.startswith(b'{"ok": false') for reply in replies)
    return (
        "garbage on the supervisor socket",
        f"{errors}/{len(replies)} error replies, ps ok",
        replies[0].decode(errors="replace").strip(),
    )


def exchange(run_dir: Path, payload: bytes) -> bytes:
    """Send raw bytes to the supervisor's socket, close our side, return what it answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(ipc.socket_path(run_dir)))
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
