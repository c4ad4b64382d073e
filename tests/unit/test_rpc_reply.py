"""The rpc backend sends a reply straight to the channel, and retries only a failed send."""

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
class FakeProducer:
    """Records each publish; fails the first `failures` ones as a lost connection would."""

    failures: int = 0
    connection: FakeConnection = field(default_factory=FakeConnection)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, body: Any, **options: Any) -> None:
        self.calls.append(options)
        if len(self.calls) <= self.failures:
            raise Gone("connection reset")


def backend_with(producer: FakeProducer) -> RPCBackend:
    backend = RPCBackend(App("rpc-reply-test", result_backend="rpc://"), "rpc://")
    backend._pid, backend._producer = os.getpid(), producer  # type: ignore[assignment]
    return backend


REQUEST = TaskRequest(id="t-1", name="add", args=[1, 2], kwargs={}, reply_to="reply-q")


def test_a_reply_goes_straight_to_the_channel_without_kombus_retry_wrapper():
    producer = FakeProducer()
    backend_with(producer).write_meta("t-1", {"status": "SUCCESS"}, REQUEST)
    assert [call["retry"] for call in producer.calls] == [False]
    assert producer.calls[0]["routing_key"] == "reply-q"
    assert producer.calls[0]["correlation_id"] == "t-1"


def test_a_failed_reply_is_sent_again_with_the_retry_policy():
    producer = FakeProducer(failures=1)
    backend_with(producer).write_meta("t-1", {"status": "SUCCESS"}, REQUEST)
    assert [call["retry"] for call in producer.calls] == [False, True]
    assert producer.calls[1]["retry_policy"] == REPLY_RETRY_POLICY


def test_a_reply_that_cannot_be_sent_is_a_backend_error():
    producer = FakeProducer(failures=2)
    with pytest.raises(BackendError, match="cannot send the result of t-1"):
        backend_with(producer).write_meta("t-1", {"status": "SUCCESS"}, REQUEST)
