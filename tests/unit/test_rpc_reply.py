"""The rpc backend writes a reply straight to the channel, and retries only a failed send."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from tq import App
from tq.backends.rpc import REPLY_RETRY_POLICY, RPCBackend
from tq.errors import BackendError
from tq.protocol import TaskRequest


class Gone(ConnectionError):
    """Stands in for a recoverable connection error (the broker went away)."""


@dataclass
class FakeConnection:
    recoverable_connection_errors: tuple[type[BaseException], ...] = (Gone,)
    recoverable_channel_errors: tuple[type[BaseException], ...] = ()
    connection_errors: tuple[type[BaseException], ...] = (Gone,)


@dataclass
class FakeChannel:
    """Records what goes straight to the channel; fails the first `failures` publishes."""

    failures: int = 0
    sent: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)

    def prepare_message(self, body, priority, content_type, content_encoding, headers, properties):
        return {"body": body, "content_type": content_type, "headers": headers, **properties}

    def basic_publish(self, message: Any, **target: Any) -> None:
        self.sent.append((message, target))
        if len(self.sent) <= self.failures:
            raise Gone("connection reset")


@dataclass
class FakeProducer:
    """kombu's Producer as the backend uses it: a channel, and publish() for the retry."""

    channel: FakeChannel = field(default_factory=FakeChannel)
    connection: FakeConnection = field(default_factory=FakeConnection)
    retries: list[dict[str, Any]] = field(default_factory=list)
    retry_fails: bool = False

    def publish(self, body: Any, **options: Any) -> None:
        self.retries.append(options)
        if self.retry_fails:
            raise Gone("still gone")


def backend_with(producer: FakeProducer) -> RPCBackend:
    backend = RPCBackend(App("rpc-reply-test", result_backend="rpc://"), "rpc://")
    backend._pid, backend._producer = os.getpid(), producer  # type: ignore[assignment]
    return backend


REQUEST = TaskRequest(id="t-1", name="add", args=[1, 2], kwargs={}, reply_to="reply-q")


def test_a_reply_goes_straight_to_the_channel_as_kombu_would_write_it():
    producer = FakeProducer()
    backend_with(producer).write_meta("t-1", {"status": "SUCCESS"}, REQUEST)
    [(message, target)] = producer.channel.sent
    assert target == {"exchange": "", "routing_key": "reply-q"}
    assert message["correlation_id"] == "t-1" and message["delivery_mode"] == 1
    assert message["content_type"] == "application/json" and message["headers"] == {}
    assert producer.retries == []


def test_a_failed_reply_is_sent_again_with_the_retry_policy():
    producer = FakeProducer(channel=FakeChannel(failures=1))
    backend_with(producer).write_meta("t-1", {"status": "SUCCESS"}, REQUEST)
    [retry] = producer.retries
    assert retry["retry"] is True and retry["retry_policy"] == REPLY_RETRY_POLICY
    assert retry["routing_key"] == "reply-q" and retry["correlation_id"] == "t-1"


def test_a_reply_that_cannot_be_sent_is_a_backend_error():
    producer = FakeProducer(channel=FakeChannel(failures=1), retry_fails=True)
    with pytest.raises(BackendError, match="cannot send the result of t-1"):
        backend_with(producer).write_meta("t-1", {"status": "SUCCESS"}, REQUEST)
