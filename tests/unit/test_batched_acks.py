"""BatchedAcks (tq/worker/acks.py): a multiple-ack never covers a message still held."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tq.worker.acks import BatchedAcks


@dataclass
class RecordingChannel:
    """Stands in for a py-amqp channel: records the frames the worker would send."""

    sent: list[tuple[str, int, Any]] = field(default_factory=list)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.sent.append(("ack", delivery_tag, multiple))

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self.sent.append(("reject", delivery_tag, requeue))


@dataclass
class Delivery:
    delivery_tag: int


def deliver(acks: BatchedAcks, *tags: int) -> None:
    for tag in tags:
        acks.delivered(Delivery(tag))


def test_a_run_of_due_acks_leaves_as_one_multiple_ack():
    channel = RecordingChannel()
    acks = BatchedAcks(channel)
    deliver(acks, 1, 2, 3, 4)
    for tag in (2, 1, 3):
        channel.basic_ack(tag)
    assert channel.sent == []  # nothing until the tick ends
    acks.flush()
    assert channel.sent == [("ack", 3, True)]
    assert acks.pending == 0


def test_acks_behind_a_held_message_go_singly_and_never_as_multiple():
    channel = RecordingChannel()
    acks = BatchedAcks(channel)
    deliver(acks, 1, 2, 3, 4, 5)
    channel.basic_ack(1)
    channel.basic_ack(3)  # 2 is still running (acks_late): 3 must not be covered by "up to 3"
    channel.basic_ack(5)
    acks.flush()
    assert channel.sent == [("ack", 1, True), ("ack", 3, False), ("ack", 5, False)]
    channel.sent.clear()
    channel.basic_ack(2)
    channel.basic_ack(4)
    acks.flush()
    assert channel.sent == [("ack", 4, True)]


def test_rejects_go_at_once_and_do_not_stop_a_later_multiple_ack():
    channel = RecordingChannel()
    acks = BatchedAcks(channel)
    deliver(acks, 1, 2, 3)
    channel.basic_reject(1, requeue=True)
    assert channel.sent == [("reject", 1, True)]
    channel.basic_ack(2)
    channel.basic_ack(3)
    acks.flush()
    assert channel.sent == [("reject", 1, True), ("ack", 3, True)]


def test_an_ack_for_an_unregistered_delivery_is_sent_at_once():
    channel = RecordingChannel()
    acks = BatchedAcks(channel)
    deliver(acks, 1, 2)
    channel.basic_ack(1)
    channel.basic_ack(7)
    assert channel.sent == [("ack", 1, True), ("ack", 7, False)]
