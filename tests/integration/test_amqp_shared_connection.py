"""Publishing from several threads on one connection (each thread its own channel).

py-amqp supports this (its frame writer has a lock for it, and tq's FrameWriter keeps one).
tq's pre-publish check polls the socket; CPython refuses a poll() on a poll object another
thread is inside ("concurrent poll() invocation"), so each thread has its own.
(Plain py-amqp 5.4.2 is no better here: its drain_events(timeout=0) toggles the shared socket's
timeout from several threads and one thread can end up in a blocking recv -- a hang; seen
while writing this test, so it is not asserted.)
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kombu import Connection

from tests.conftest import require_broker
from tq.transports.amqp import Transport

pytestmark = pytest.mark.timeout(120)

URL = "amqp://guest:guest@127.0.0.1:5672//"
THREADS = 4
PER_THREAD = 1500
SECONDS = 20


def publish_from_threads(transport) -> tuple[list[BaseException], int]:
    require_broker("amqp")
    queue = f"tq-test-shared-conn-{uuid.uuid4().hex}"
    errors: list[BaseException] = []
    sent = [0] * THREADS
    with Connection(URL, transport=transport) as connection:
        setup = connection.channel()
        setup.queue_declare(queue, auto_delete=False)
        channels = [connection.channel() for _ in range(THREADS)]
        deadline = time.monotonic() + SECONDS
        start = threading.Barrier(THREADS)

        def run(index: int) -> None:
            channel = channels[index]
            start.wait()
            for n in range(PER_THREAD):
                if time.monotonic() > deadline:
                    return
                message = channel.prepare_message(f"{index}-{n}".encode())
                try:
                    channel.basic_publish(message, exchange="", routing_key=queue)
                except BaseException as exc:  # noqa: BLE001 - any error is what the test reports
                    errors.append(exc)
                    return
                sent[index] += 1

        threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 30)
        try:
            setup.queue_delete(queue)
        except Exception:
            pass
    return errors, sum(sent)


def test_tq_publishes_from_several_threads_without_error() -> None:
    errors, _sent = publish_from_threads(Transport)
    assert errors == [], [repr(e) for e in errors]
