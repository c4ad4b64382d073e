"""The embedded broker's polling economies: what a consumer reads and writes per message, and
that none of them delays or loses a message."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Queue
from kombu.asynchronous import Hub

from tq.transports import register_transports, sqlite_channel
from tq.transports.sqlite import _claim_soon
from tq.transports.sqlite_checkpoint import Checkpointer
from tq.transports.sqlite_store import BrokerStore

from .test_sqlite_transport import publish, url_for

register_transports()


def counting_claims(monkeypatch: pytest.MonkeyPatch, store: BrokerStore) -> dict[str, int]:
    """Count the store's claims per queue (the real claim still runs)."""
    counts: dict[str, int] = {}
    claim = store.claim

    def counted(queue: str, **kwargs: object) -> list:
        counts[queue] = counts.get(queue, 0) + 1
        return claim(queue, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "claim", counted)
    return counts


@pytest.mark.timeout(60)
def test_an_empty_queue_is_read_less_often_while_another_delivers_but_not_starved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_channel, "EMPTY_RECHECK_S", 0.05)
    backlog = 2000
    with Connection(url_for(tmp_path)) as conn, Connection(url_for(tmp_path)) as other:
        busy, idle = Queue("busy"), Queue("idle")
        for queue in (busy, idle):
            queue(conn.default_channel).declare()
        publish(conn, list(range(backlog)), "busy")
        claims = counting_claims(monkeypatch, conn.transport.store)
        got: list = []

        def on_message(body: object, message: object) -> None:
            got.append(body)
            message.ack()  # type: ignore[attr-defined]
            if len(got) == 20:
                publish(other, ["urgent"], "idle")

        started = time.monotonic()
        with Consumer(conn, [busy, idle], accept=["json"], callbacks=[on_message]):
            deadline = started + 40
            while len(got) < backlog + 1 and time.monotonic() < deadline:
                conn.drain_events(timeout=1)
        elapsed_s = time.monotonic() - started
    assert sorted(got, key=str) == sorted([*range(backlog), "urgent"], key=str)
    # Read about once per EMPTY_RECHECK_S while the busy queue delivered, not once per message.
    assert claims["idle"] <= elapsed_s / 0.05 + 3, (claims, elapsed_s)
    # ... and the message that came meanwhile was taken long before the backlog ran out.
    assert got.index("urgent") < backlog // 2


@pytest.mark.timeout(30)
def test_an_idle_consumer_reads_every_queue_at_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_channel, "EMPTY_RECHECK_S", 60.0)
    with Connection(url_for(tmp_path)) as conn, Connection(url_for(tmp_path)) as other:
        first, second = Queue("first"), Queue("second")
        for queue in (first, second):
            queue(conn.default_channel).declare()
        got: list = []
        with Consumer(conn, [first, second], accept=["json"], callbacks=[on_ack(got)]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.1)  # both found empty
            publish(other, ["late"], "second")
            started = time.monotonic()
            conn.drain_events(timeout=5)
            waited_s = time.monotonic() - started
    assert got == ["late"]
    assert waited_s < 1.0  # a poll, not EMPTY_RECHECK_S


def on_ack(got: list):  # noqa: ANN201
    def on_message(body: object, message: object) -> None:
        got.append(body)
        message.ack()  # type: ignore[attr-defined]

    return on_message


def test_acks_wait_for_a_claim_only_when_one_is_due() -> None:
    coalescing, full, now = 0.002, float("inf"), None
    # A channel holding its claim back for more acks claims within CLAIM_COALESCE_S.
    assert _claim_soon([coalescing], delivered=0)
    # A channel that can take messages claims on the next pass, which comes at once only if
    # this pass delivered; otherwise the queues were empty and the acks are written now.
    assert _claim_soon([full, now], delivered=3)
    assert not _claim_soon([full, now], delivered=0)
    # A full prefetch window claims after an ack, which may not come soon.
    assert not _claim_soon([full], delivered=5)
    assert not _claim_soon([], delivered=0)


@pytest.mark.timeout(60)
def test_a_hub_consumer_writes_its_deferred_acks_once_the_queue_runs_dry(
    tmp_path: Path,
) -> None:
    bodies = [f"m{i}" for i in range(100)]
    got: list = []
    with Connection(url_for(tmp_path)) as conn:
        queue, control = Queue("work"), Queue("control")
        for each in (queue, control):
            each(conn.default_channel).declare()
        publish(conn, bodies, "work")
        hub = Hub()
        pending: list = []
        # Acks come later, from the loop, as a worker's do when its pool reports a result.
        work = Consumer(
            conn.channel(), [queue], accept=["json"], callbacks=[lambda b, m: pending.append(m)]
        )
        work.qos(prefetch_count=8)
        work.consume()
        # A second consumer without a prefetch limit, like a worker's control queue.
        Consumer(conn.channel(), [control], accept=["json"], callbacks=[on_ack(got)]).consume()
        conn.transport.register_with_event_loop(conn.connection, hub)
        store = conn.transport.store
        # Transactions that wrote acks alone while the queue still held messages to claim.
        ack_only: list[int] = []
        flush_acks = store.flush_acks

        def counted_flush() -> None:
            if store._deferred_acks and store.size("work"):
                ack_only.append(len(store._deferred_acks))
            flush_acks()

        store.flush_acks = counted_flush  # type: ignore[method-assign]

        def ack_pending() -> None:  # one at a time, as tasks finish
            if pending:
                message = pending.pop(0)
                got.append(message.payload)
                message.ack()

        hub.call_repeatedly(0.001, ack_pending)
        loop = hub.create_loop()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (
            len(got) < len(bodies) or store.unacked_size("work") or store._deferred_acks
        ):
            next(loop)
        hub.close()
    assert got == bodies
    # While the queue held messages, acks rode on the claims; an ack-only transaction after
    # each pass, as before, made one for nearly every ack. (How many claims there are depends on
    # the machine's speed: a slow loop turn finds the claim's coalescing wait over sooner.)
    assert len(ack_only) <= 3, ack_only


@pytest.mark.timeout(30)
def test_a_consumer_store_checkpoints_from_its_thread(tmp_path: Path) -> None:
    store = BrokerStore(tmp_path / "broker.db")
    store.declare_queue("q")
    store.checkpoint_in_thread()
    assert store._db().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    payload = "x" * 4000
    database_bytes = (tmp_path / "broker.db").stat().st_size
    for _batch in range(10):
        store.put([(["q"], 0, payload, 0.0, None)] * 100, durable=False)
    # ~1,000 pages went to the WAL; the thread copies them into the database file.
    deadline = time.monotonic() + 10
    while (tmp_path / "broker.db").stat().st_size < database_bytes + 3_000_000:
        assert time.monotonic() < deadline, "the WAL was never checkpointed"
        time.sleep(0.02)
    thread = store._checkpointer._thread  # type: ignore[union-attr]
    store.close()
    assert not thread.is_alive()
    # Closed and opened again, the connection checkpoints as SQLite does by default.
    assert store._db().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    store.close()


@pytest.mark.timeout(30)
def test_a_checkpointer_that_cannot_open_the_file_hands_checkpoints_back(tmp_path: Path) -> None:
    failed: list[bool] = []
    checkpointer = Checkpointer(
        tmp_path, lambda: 0, lambda: failed.append(True), busy_timeout_s=1.0
    )  # a directory: SQLite cannot open it
    deadline = time.monotonic() + 10
    while not failed and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpointer.stop()
    assert failed == [True]


@pytest.mark.timeout(30)
def test_delivery_tags_are_unique_and_a_forked_child_makes_its_own(tmp_path: Path) -> None:
    store = BrokerStore(tmp_path / "broker.db")
    store.declare_queue("q")
    store.put([(["q"], 0, f'"{n}"', 0.0, None) for n in range(12)], durable=False)
    holder = (os.getpid(), 1.0)
    tags = [tag for _ in range(5) for tag, _ in store.claim("q", count=2, keep_unacked=True,
                                                             holder=holder, now=1.0)]  # fmt: skip
    assert len(set(tags)) == 10
    assert tags == sorted(tags) and {len(tag) for tag in tags} == {32}  # in claim order
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child claims the last two on its own connection
        try:
            child_tags = [tag for tag, _ in store.claim("q", count=2, keep_unacked=True,
                                                        holder=holder, now=1.0)]  # fmt: skip
            os.write(write, " ".join(child_tags).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_tags = os.read(read, 4096).decode().split()
    os.waitpid(pid, 0)
    assert len(child_tags) == 2 and not set(child_tags) & set(tags)
    assert {tag[:20] for tag in child_tags} != {tag[:20] for tag in tags}
    rows = sqlite3.connect(tmp_path / "broker.db").execute("SELECT COUNT(*) FROM unacked")
    assert rows.fetchone()[0] == 12
    store.close()
