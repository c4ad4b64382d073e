"""Message signing against real workers: signed tasks run, unsigned and tampered ones are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from kombu.serialization import dumps

from tests.conftest import ROOT, TESTS, ledger_lines, reset_test_app
from tq import App, states
from tq.protocol import build_task_message
from tq.signing import SigningPolicy, signed_headers

pytestmark = pytest.mark.timeout(90)

KEY = "s3cr3t-signing-key-for-tests-0123456789"
#: How long the test waits for the worker to act on what it was sent.
SETTLE_TIMEOUT_S = 20.0


def publish_raw(app: App, headers: dict, body: str) -> None:
    """Publish a JSON body with exactly these headers to the app's default queue."""
    with app.broker_connection() as connection:
        queue = app.default_queue()
        connection.Producer().publish(
            body,
            exchange="",
            routing_key=queue.name,
            declare=[queue],
            headers=headers,
            content_type="application/json",
            content_encoding="utf-8",
        )


def signed_then_changed(task_id: str, *, signed_args: list, sent_args: list) -> tuple[dict, str]:
    """Headers signed for `signed_args` and a body carrying `sent_args` (a tampered message)."""
    message = build_task_message(task_id=task_id, name="tqtest.tasks.mark", args=signed_args)
    _type, _encoding, signed_body = dumps(list(message.body), serializer="json")
    headers = signed_headers(
        SigningPolicy(KEY.encode()),
        message.headers,
        body=signed_body,
        content_type="application/json",
        content_encoding="utf-8",
    )
    _type, _encoding, sent_body = dumps([sent_args, {}, {}], serializer="json")
    return headers, sent_body


def wait_for_ledger(broker, entry: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while entry not in ledger_lines(broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert entry in ledger_lines(broker), f"{entry} never ran: {ledger_lines(broker)}"


def test_signed_tasks_run_and_unsigned_or_tampered_messages_are_refused(
    broker, start_worker, monkeypatch
):
    from tqtest import tasks

    monkeypatch.setenv("TQ_MESSAGE_SIGNING_KEY", KEY)
    reset_test_app()
    worker = start_worker("-c", "1")
    assert tasks.mark.delay("signed-before").get(timeout=15) == "signed-before"

    with monkeypatch.context() as unsigned_env:  # a second app, in an env without the key
        unsigned_env.delenv("TQ_MESSAGE_SIGNING_KEY")
        unsigned_app = App("unsigned-client")
        unsigned = unsigned_app.send_task("tqtest.tasks.mark", ("unsigned",))
        unsigned_app.publisher.close()
    body_changed, body = signed_then_changed(
        "tampered-body", signed_args=["ok"], sent_args=["evil"]
    )
    publish_raw(tasks.app, body_changed, body)
    id_changed, body = signed_then_changed("signed-id", signed_args=["same"], sent_args=["same"])
    id_changed["id"] = "tampered-id"
    publish_raw(tasks.app, id_changed, body)
    after = tasks.mark.delay("signed-after")

    assert after.get(timeout=15) == "signed-after"
    worker.wait_for_log("does not match", timeout=SETTLE_TIMEOUT_S)
    wait_for_ledger(broker, "signed-after")
    log = worker.log()
    refusals = [line for line in log.splitlines() if "Refused task" in line]
    assert len(refusals) == 3, log
    assert any(f"[{unsigned.id!r}]: it is not signed" in line for line in refusals), refusals
    assert any("['tampered-body']: its signature does not match" in line for line in refusals)
    assert any("['tampered-id']: its signature does not match" in line for line in refusals)
    assert all("WARNING" in line for line in refusals)
    assert sorted(ledger_lines(broker)) == ["signed-after", "signed-before"]
    assert unsigned.state == states.PENDING  # a refused message writes no result
    assert KEY not in log
    assert worker.process.poll() is None


def test_short_signing_key_stops_the_worker_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), "worker"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(
            os.environ,
            PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}",
            TQ_DATA_DIR=str(tmp_path / "data"),
            TQ_MESSAGE_SIGNING_KEY="too-short",
        ),
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "message_signing_key is 9 bytes: use at least 16 random bytes" in line
    assert "too-short" not in line
