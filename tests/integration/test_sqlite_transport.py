"""The embedded SQLite broker under kombu, with real processes sharing one database file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.asynchronous import Hub

from tq.errors import DataDirError
from tq.transports import register_transports

ROOT = Path(__file__).resolve().parents[2]

register_transports()

# Child processes: argv[1] is the broker URL, argv[2] a JSON argument.
PRELUDE = """
import json, os, sys, time
from kombu import Connection, Consumer, Exchange, Producer, Queue
from tq.transports import register_transports
register_transports()
url, arg = sys.argv[1], json.loads(sys.argv[2])
"""

PUBLISH = (
    PRELUDE
    + """
with Connection(url) as conn:
    producer = Producer(conn)
    for body in arg["bodies"]:
        producer.publish(body, exchange=arg.get("exchange", ""), routing_key=arg["routing_key"],
                         serializer="json")
        time.sleep(arg.get("pause", 0))
"""
)

# Consumes and acks until the queue stays empty for a second; writes the bodies it got.
CONSUME_ALL = (
    PRELUDE
    + """
got = []
with Connection(url) as conn:
    def on_message(body, message):
        got.append(body)
        message.ack()
    # Start together: on a loaded machine the first one could drain the queue alone.
    open(arg["ready"], "w").close()
    start_by = time.monotonic() + 20
    while not all(map(os.path.exists, arg["peers"])) and time.monotonic() < start_by:
        time.sleep(0.01)
    with Consumer(conn, [Queue(arg["queue"])], accept=["json"], callbacks=[on_message],
                  prefetch_count=8):
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            try:
                conn.drain_events(timeout=0.2)
                idle_since = time.monotonic()
            except TimeoutError:
                pass
with open(arg["out"], "w") as out:
    json.dump(got, out)
"""
)

# Receives messages without acking, says so in a file, then waits to be killed.
HOLD_UNACKED = (
    PRELUDE
    + """
got = []
with Connection(url) as conn:
    with Consumer(conn, [Queue(arg["queue"])], accept=["json"],
                  callbacks=[lambda body, message: got.append(body)],
                  prefetch_count=arg["count"]):
        while len(got) < arg["count"]:
            conn.drain_events(timeout=10)
        with open(arg["out"], "w") as out:
            json.dump(got, out)
        time.sleep(60)
"""
)


def url_for(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker' / 'broker.db'}"


def spawn(code: str, url: str, arg: dict) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code, url, json.dumps(arg)], env=env)


@contextmanager
def processes(*started: subprocess.Popen) -> Iterator[tuple[subprocess.Popen, ...]]:
    """Yield the processes; kill and reap each one (by pid) afterwards."""
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_ok(process: subprocess.Popen, timeout: float = 30) -> None:
    assert process.wait(timeout=timeout) == 0


def publish(conn: Connection, bodies: list, routing_key: str, **kwargs: object) -> None:
    producer = Producer(conn)
    for body in bodies:
        producer.publish(body, routing_key=routing_key, serializer="json", **kwargs)


def collect(
    conn: Connection,
    queues: list[Queue],
    count: int,
    *,
    ack: bool = True,
    timeout: float = 10,
    **consumer_options: object,
) -> list:
    """Consume count messages from queues and return their bodies in arrival order."""
    got: list = []

    def on_message(body: object, message: object) -> None:
        got.append(body)
        if ack:
            message.ack()  # type: ignore[attr-defined]

    deadline = time.monotonic() + timeout
    with Consumer(conn, queues, accept=["json"], callbacks=[on_message], **consumer_options):
        while len(got) < count and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    return got


@pytest.mark.timeout(30)
def test_publish_consume_ack_round_trip(tmp_path: Path) -> None:
    with Connection(url_for(tmp_path)) as conn:
        queue = Queue("jobs", Exchange("jobs", "direct"), "jobs")
        Producer(conn).publish(
            {"n": 1, "s": "é"},
            exchange=queue.exchange,
            routing_key="jobs",
            declare=[queue],
            serializer="json",
        )
        assert conn.default_channel._size("jobs") == 1
        received = []

        def on_message(body: object, message: object) -> None:
            received.append((body, message.delivery_info, message.content_type))
            message.ack()

        with Consumer(conn, [queue], accept=["json"], callbacks=[on_message]):
            conn.drain_events(timeout=5)
        assert received == [
            ({"n": 1, "s": "é"}, {"exchange": "jobs", "routing_key": "jobs"}, "application/json")
        ]
        assert conn.default_channel._size("jobs") == 0
        assert conn.transport.store.unacked_size("jobs") == 0
        assert (tmp_path / "broker").stat().st_mode & 0o777 == 0o700


@pytest.mark.timeout(30)
def test_fifo_within_a_priority_and_higher_priority_first(tmp_path: Path) -> None:
    with Connection(url_for(tmp_path)) as conn:
        queue = Queue("prio")
        queue(conn.default_channel).declare()
        for body, priority in [("a", 0), ("b", 0), ("c", 9), ("d", 5), ("e", 9), ("f", None)]:
            publish(conn, [body], "prio", priority=priority)
        assert collect(conn, [queue], 6) == ["c", "e", "d", "a", "b", "f"]


@pytest.mark.timeout(30)
def test_fanout_reaches_every_bound_queue_even_from_another_process(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    broadcast = Exchange("celery.pidbox", "fanout")
    queues = [Queue(f"{name}.celery.pidbox", broadcast) for name in ("w1", "w2")]
    with Connection(url) as conn:
        for queue in queues:
            queue(conn.default_channel).declare()
        # The publisher never declares anything: it must see the bindings in the file.
        with processes(
            spawn(
                PUBLISH, url, {"exchange": "celery.pidbox", "routing_key": "", "bodies": ["ping"]}
            )
        ) as (publisher,):
            wait_ok(publisher)
        assert collect(conn, [queues[0]], 1) == ["ping"]
        assert collect(conn, [queues[1]], 1) == ["ping"]


@pytest.mark.timeout(30)
def test_topic_exchange_matches_hash_and_star(tmp_path: Path) -> None:
    events = Exchange("celeryev", "topic")
    every = Queue("monitor", events, "#")
    task_star = Queue("tasks", events, "task.*")
    worker_hash = Queue("workers", events, "worker.#")
    with Connection(url_for(tmp_path)) as conn:
        for queue in (every, task_star, worker_hash):
            queue(conn.default_channel).declare()
        for key in ("task.succeeded", "worker.heartbeat", "task.a.b", "other"):
            publish(conn, [key], key, exchange="celeryev")
        assert collect(conn, [every], 4) == [
            "task.succeeded",
            "worker.heartbeat",
            "task.a.b",
            "other",
        ]
        assert collect(conn, [task_star], 2, timeout=0.5) == ["task.succeeded"]
        assert collect(conn, [worker_hash], 2, timeout=0.5) == ["worker.heartbeat"]


@pytest.mark.timeout(30)
def test_purge_size_and_delete(tmp_path: Path) -> None:
    with Connection(url_for(tmp_path)) as conn:
        channel = conn.default_channel
        queue = Queue("work", Exchange("work", "direct"), "work")
        queue(channel).declare()
        publish(conn, list(range(5)), "work", exchange="work")
        assert queue(channel).queue_declare(passive=True).message_count == 5
        assert queue(channel).purge() == 5
        assert channel._size("work") == 0
        assert ("work", "work", "work") in list(channel.list_bindings())
        queue(channel).delete()
        assert ("work", "work", "work") not in list(channel.list_bindings())
        publish(conn, [1], "work", exchange="work")
        assert channel._size("work") == 0  # unbound now: dropped, as AMQP drops it


@pytest.mark.timeout(60)
def test_four_producer_processes_deliver_exactly_ten_thousand_messages(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    with Connection(url) as conn:
        Queue("bulk")(conn.default_channel).declare()
        producers = [
            spawn(
                PUBLISH, url, {"routing_key": "bulk", "bodies": [f"{p}-{i}" for i in range(2500)]}
            )
            for p in range(4)
        ]
        with processes(*producers):
            got = collect(conn, [Queue("bulk")], 10_000, timeout=50, prefetch_count=8)
            for producer in producers:
                wait_ok(producer)
        got += collect(conn, [Queue("bulk")], 1, timeout=0.5)  # nothing more may arrive
    assert len(got) == 10_000
    assert set(got) == {f"{p}-{i}" for p in range(4) for i in range(2500)}


@pytest.mark.timeout(60)
def test_two_consumer_processes_never_get_the_same_message(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    bodies = list(range(2000))
    with Connection(url) as conn:
        Queue("shared")(conn.default_channel).declare()
        publish(conn, bodies, "shared")
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    peers = [str(out.with_suffix(".ready")) for out in outs]
    with processes(
        *[
            spawn(
                CONSUME_ALL,
                url,
                {"queue": "shared", "out": str(out), "ready": ready, "peers": peers},
            )
            for out, ready in zip(outs, peers, strict=True)
        ]
    ) as consumers:
        for consumer in consumers:
            wait_ok(consumer, timeout=50)
    first, second = (json.loads(out.read_text()) for out in outs)
    assert not set(first) & set(second)
    assert sorted(first + second) == bodies
    assert first and second  # both really consumed


@pytest.mark.timeout(60)
def test_sigkilled_consumer_messages_go_to_another_consumer(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    with Connection(url, transport_options={"orphan_check_interval": 0.2}) as conn:
        Queue("fragile")(conn.default_channel).declare()
        publish(conn, ["m0", "m1", "m2"], "fragile")
        out = tmp_path / "held.json"
        with processes(
            spawn(HOLD_UNACKED, url, {"queue": "fragile", "count": 3, "out": str(out)})
        ) as (holder,):
            deadline = time.monotonic() + 20
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert json.loads(out.read_text()) == ["m0", "m1", "m2"]
            assert conn.default_channel._size("fragile") == 0
            os.kill(holder.pid, signal.SIGKILL)  # left unreaped: a zombie must count as dead
            redelivered = []

            def on_message(body: object, message: object) -> None:
                redelivered.append((body, message.delivery_info.get("redelivered")))
                message.ack()

            with Consumer(conn, [Queue("fragile")], accept=["json"], callbacks=[on_message]):
                while len(redelivered) < 3 and time.monotonic() < deadline + 10:
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
        assert redelivered == [("m0", True), ("m1", True), ("m2", True)]
        assert conn.transport.store.unacked_size("fragile") == 0


@pytest.mark.timeout(30)
def test_visibility_timeout_hands_out_a_message_held_too_long(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    options = {"visibility_timeout": 1, "orphan_check_interval": 0.1}
    with Connection(url) as holder_conn, Connection(url, transport_options=options) as conn:
        Queue("slow")(conn.default_channel).declare()
        publish(conn, ["late"], "slow")
        held = holder_conn.default_channel.basic_get("slow")
        assert held is not None and conn.default_channel._size("slow") == 0
        started = time.monotonic()
        assert collect(conn, [Queue("slow")], 1, timeout=10) == ["late"]
        assert 0.9 < time.monotonic() - started < 5


@pytest.mark.timeout(30)
def test_reject_recover_and_close_put_messages_back_at_the_head(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    with Connection(url) as conn:
        channel = conn.default_channel
        Queue("back")(channel).declare()
        publish(conn, ["first", "second"], "back")
        message = channel.basic_get("back")
        message.reject(requeue=True)
        again = channel.basic_get("back")
        assert (again.payload, again.delivery_info["redelivered"]) == ("first", True)
        channel.basic_recover(requeue=True)
        with Connection(url) as other:
            taken = other.default_channel.basic_get("back")
            assert taken.payload == "first"
        # `other` closed without acking: "first" is back at the head.
        assert collect(conn, [Queue("back")], 2) == ["first", "second"]


@pytest.mark.timeout(30)
def test_no_ack_consumer_leaves_no_unacked_rows(tmp_path: Path) -> None:
    with Connection(url_for(tmp_path)) as conn:
        queue = Queue("events", Exchange("celeryev", "topic"), "#", no_ack=True)
        queue(conn.default_channel).declare()
        publish(conn, ["e1", "e2"], "task.sent", exchange="celeryev", delivery_mode=1)
        assert collect(conn, [queue], 2, ack=False, no_ack=True) == ["e1", "e2"]
        assert conn.transport.store.unacked_size("events") == 0


@pytest.mark.timeout(60)
def test_hub_loop_consumer_receives_messages_from_another_process(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    bodies = [f"b{i}" for i in range(200)]
    got: list = []
    with Connection(url) as conn:
        queue = Queue("hubq")
        queue(conn.default_channel).declare()

        def on_message(body: object, message: object) -> None:
            got.append(body)
            message.ack()

        hub = Hub()
        consumer = Consumer(conn.channel(), [queue], accept=["json"], callbacks=[on_message])
        consumer.qos(prefetch_count=8)
        consumer.consume()
        conn.transport.register_with_event_loop(conn.connection, hub)
        # Bursts with pauses, so the poller backs off and must wake up again.
        with processes(
            spawn(PUBLISH, url, {"routing_key": "hubq", "bodies": bodies, "pause": 0.002})
        ) as (publisher,):
            loop = hub.create_loop()
            deadline = time.monotonic() + 40
            while len(got) < len(bodies) and time.monotonic() < deadline:
                next(loop)
            wait_ok(publisher)
        consumer.cancel()
        hub.close()
    assert got == bodies


@pytest.mark.timeout(10)
def test_unwritable_directory_error_names_the_path(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(locked)]).returncode:
            pytest.skip("running as root without chattr +i: no way to make a directory read-only")
    else:
        locked.chmod(0o500)
    try:
        with pytest.raises(DataDirError) as raised:
            Connection(f"sqlite:///{locked / 'broker.db'}").connect()
        assert str(locked / "broker.db") in str(raised.value)
        assert "writable" in str(raised.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)])
        locked.chmod(0o700)


@pytest.mark.timeout(10)
def test_path_under_a_regular_file_error_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(DataDirError) as raised:
        Connection(f"sqlite:///{tmp_path / 'plain' / 'broker.db'}").connect()
    assert f"{tmp_path / 'plain'} is not a directory" in str(raised.value)


@pytest.mark.timeout(10)
def test_corrupt_file_error_names_the_path_and_what_to_do(tmp_path: Path) -> None:
    corrupt = tmp_path / "broker.db"
    corrupt.write_bytes(b"this is not a database, it only sits where one should be" * 100)
    with pytest.raises(DataDirError) as raised:
        Connection(f"sqlite:///{corrupt}").connect()
    assert str(corrupt) in str(raised.value)
    assert "corrupt or not a SQLite file" in str(raised.value)
    assert "move it away" in str(raised.value)


@pytest.mark.timeout(10)
def test_url_without_a_path_is_refused() -> None:
    with pytest.raises(DataDirError, match="names no file"):
        Connection("sqlite://").connect()


@pytest.mark.timeout(30)
def test_expired_messages_are_never_delivered(tmp_path: Path) -> None:
    options = {"orphan_check_interval": 0.1}
    with Connection(url_for(tmp_path), transport_options=options) as conn:
        short_lived = Queue("pidbox-like", message_ttl=0.3)
        plain = Queue("plain")
        for queue in (short_lived, plain):
            queue(conn.default_channel).declare()
        publish(conn, ["stale"], "pidbox-like")
        publish(conn, ["gone"], "plain", expiration=0.3)
        publish(conn, ["kept"], "plain")
        time.sleep(0.5)
        publish(conn, ["fresh"], "pidbox-like")
        assert collect(conn, [short_lived], 2, timeout=1) == ["fresh"]
        assert collect(conn, [plain], 2, timeout=1) == ["kept"]
        assert conn.default_channel._size("pidbox-like") == 0
        assert conn.default_channel._size("plain") == 0
