"""Counting executed no-op tasks outside the queue under test, the same way for tq and Celery."""

from __future__ import annotations

import os

# Where the benchmark reads completions (run.py sets one pair per system):
#   BENCH_REDIS_URL + BENCH_COUNTER_KEY: INCR a Redis counter (the Redis broker runs);
#   BENCH_LEDGER: append one byte to a file (every other broker).
# A ledger rather than polling the queue's length: message_count only counts messages still
# waiting, not those prefetched or running, so it reaches 0 before the last task has run.
# One-byte O_APPEND writes never interleave, so the file's size is the count, with no lock.
#: (pid, handle) of this process's Redis client or ledger file descriptor.
_sink: tuple[int, object] | None = None


def _open_sink() -> object:
    redis_url = os.environ.get("BENCH_REDIS_URL")
    if redis_url:
        import redis

        return redis.Redis.from_url(redis_url)
    ledger = os.environ.get("BENCH_LEDGER")
    if ledger:
        return os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return None


def record_completion() -> None:
    """Count one executed task (a no-op when the benchmark did not ask for counting)."""
    global _sink
    # Opened per process: a prefork child must not share its parent's socket or descriptor.
    if _sink is None or _sink[0] != os.getpid():
        _sink = (os.getpid(), _open_sink())
    handle = _sink[1]
    if handle is None:
        return
    if isinstance(handle, int):
        os.write(handle, b".")
    else:
        handle.incr(os.environ["BENCH_COUNTER_KEY"])  # type: ignore[attr-defined]
