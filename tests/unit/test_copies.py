"""tq.worker.copies: which queue a held message goes back to, and the copy that goes there."""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from tq.worker.copies import counted, publish_copy, queue_of

QUEUES = [
    Queue("celery", Exchange("celery", type="direct"), routing_key="celery"),
    Queue("images", Exchange("media", type="direct"), routing_key="images"),
    Queue("logs", Exchange("fan", type="fanout"), routing_key=""),
    Queue("a", Exchange("shared", type="direct"), routing_key="same"),
    Queue("b", Exchange("shared", type="direct"), routing_key="same"),
]


def test_the_queue_is_the_one_its_exchange_and_key_name() -> None:
    assert queue_of(QUEUES, {"exchange": "celery", "routing_key": "celery"}) == "celery"
    assert queue_of(QUEUES, {"exchange": "media", "routing_key": "images"}) == "images"
    # The default exchange routes by queue name.
    assert queue_of(QUEUES, {"exchange": "", "routing_key": "images"}) == "images"


def test_no_queue_when_the_delivery_does_not_name_exactly_one_consumed_queue() -> None:
    assert queue_of(QUEUES, {"exchange": "fan", "routing_key": ""}) is None  # fanout
    assert queue_of(QUEUES, {"exchange": "shared", "routing_key": "same"}) is None  # two
    assert queue_of(QUEUES, {"exchange": "", "routing_key": "elsewhere"}) is None
    assert queue_of(QUEUES, {"exchange": "media", "routing_key": "video"}) is None


class RecordingChannel:
    def __init__(self) -> None:
        self.published: list[tuple[Any, str, str]] = []

    def prepare_message(self, body, priority, content_type, content_encoding, headers, props):
        return {
            "body": body,
            "priority": priority,
            "content_type": content_type,
            "content_encoding": content_encoding,
            "headers": headers,
            "properties": props,
        }

    def basic_publish(self, message: Any, exchange: str, routing_key: str) -> None:
        self.published.append((message, exchange, routing_key))


class HeldMessage:
    body = b'[[2, 3], {}, {"callbacks": null}]'
    content_type = "application/json"
    content_encoding = "utf-8"
    headers = {"id": "t1", "task": "add", "eta": "2030-01-01T00:00:00+00:00"}
    properties = {
        "correlation_id": "t1",
        "reply_to": "client-queue",
        "delivery_mode": 2,
        "priority": 5,
        "application_headers": {"id": "t1"},
    }


def test_the_copy_is_the_message_as_it_came_sent_to_its_queue_by_name() -> None:
    channel = RecordingChannel()
    publish_copy(channel, HeldMessage(), "images", counter="tq_eta_handbacks")
    [(message, exchange, routing_key)] = channel.published
    assert (exchange, routing_key) == ("", "images")
    assert message["body"] == HeldMessage.body
    assert message["headers"] == {**HeldMessage.headers, "tq_eta_handbacks": 1}
    assert message["priority"] == 5
    assert (message["content_type"], message["content_encoding"]) == ("application/json", "utf-8")
    assert message["properties"] == {
        "correlation_id": "t1",
        "reply_to": "client-queue",
        "delivery_mode": 2,
    }


def test_each_hand_back_counts_in_the_copy() -> None:
    channel = RecordingChannel()
    again = HeldMessage()
    again.headers = {**HeldMessage.headers, "tq_eta_handbacks": 4}
    publish_copy(channel, again, "celery", counter="tq_eta_handbacks")
    assert channel.published[0][0]["headers"]["tq_eta_handbacks"] == 5


def test_a_count_is_a_whole_number_above_zero_or_nothing() -> None:
    assert counted({"tq_lost_runs": 2}, "tq_lost_runs") == 2
    for headers in ({}, {"tq_lost_runs": "2"}, {"tq_lost_runs": True}, {"tq_lost_runs": -1}, None):
        assert counted(headers, "tq_lost_runs") == 0
