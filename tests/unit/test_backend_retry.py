"""retry_unavailable: a backend that cannot be reached is tried again, within bounds."""

from __future__ import annotations

import time

import pytest

from tq.backends import base
from tq.backends.base import retry_unavailable


class Away(Exception):
    """Stands for "connection refused"."""


def unavailable(exc: BaseException) -> bool:
    return isinstance(exc, Away)


def test_tries_again_until_the_backend_answers(monkeypatch):
    monkeypatch.setattr(base, "UNAVAILABLE_BACKOFF_S", 0.001)
    calls = []

    def call():
        calls.append(1)
        if len(calls) < 4:
            raise Away()
        return "stored"

    assert retry_unavailable(call, unavailable) == "stored"
    assert len(calls) == 4


def test_other_errors_are_raised_at_once():
    calls = []

    def call():
        calls.append(1)
        raise ValueError("refused: not a connection problem")

    with pytest.raises(ValueError):
        retry_unavailable(call, unavailable)
    assert len(calls) == 1


def test_gives_up_at_the_deadline(monkeypatch):
    monkeypatch.setattr(base, "UNAVAILABLE_BACKOFF_S", 0.01)
    calls = []

    def call():
        calls.append(1)
        raise Away()

    with pytest.raises(Away):
        retry_unavailable(call, unavailable, deadline=time.monotonic() + 0.1)
    assert 2 <= len(calls) <= 10


def test_without_a_deadline_the_window_is_bounded(monkeypatch):
    monkeypatch.setattr(base, "UNAVAILABLE_RETRY_S", 0.05)
    monkeypatch.setattr(base, "UNAVAILABLE_BACKOFF_S", 0.01)

    def call():
        raise Away()

    with pytest.raises(Away):
        retry_unavailable(call, unavailable)
