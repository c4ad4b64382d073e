"""Redis result backend: SETEX + PUBLISH per state, clients wait on the channel (redis_wait).

Chords are counted in Redis with Celery 5.7's keys, so that Celery and tq workers can finish
the same chord: `celery-taskset-meta-<gid>.j` (a ZSET of `[1, id, state, result]` scored by
group_index), `.t` (members added while running), `.s` (the size, set by the client), `.d`
(the `<id>:<index>` of every recorded part: a redelivered header task counts once) and `.c`
(the dispatch claim, `"done"` once the body is sent).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import states
from ..errors import BackendError
from ..transports import redis_client_identity
from .base import (
    GROUP_KEY_PREFIX,
    TASK_KEY_PREFIX,
    ChordPart,
    ChordReady,
    KeyValueBackend,
    join_chord_parts,
    part_result,
    pending_meta,
    raise_timeout,
    retry_unavailable,
)
from .redis_wait import ResultChannels, Subscription, subscriber_factory

if TYPE_CHECKING:
    from ..app import App
    from ..protocol import TaskRequest

#: How long the "done" claim outlives a finished chord, so late duplicates are ignored.
CHORD_DONE_EXPIRES_S = 86400

#: Keep a stored SUCCESS: write only when the key is not a SUCCESS already.
#: The check and the write are one atomic script so a redelivered task cannot race it.
_STORE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and string.find(current, '"status": "SUCCESS"', 1, true) then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


# Record one finished header task unless its <id>:<index> is already recorded, then, if
# that was the last part, take the claim and clear the chord in the same atomic step: the
# body is sent by exactly one worker. A claim held by a Celery worker (a token, not "done")
# makes SET NX fail here too, so the two never both send it.
_CHORD_PART_SCRIPT = """
local jkey, tkey, skey, dkey, ckey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('GET', ckey) == 'done' then
  return {-1}
end
if redis.call('SISMEMBER', dkey, ARGV[1]) == 0 then
  redis.call('ZADD', jkey, ARGV[3], ARGV[2])
  redis.call('SADD', dkey, ARGV[1])
end
local ready = redis.call('ZCARD', jkey)
local expires = tonumber(ARGV[4])
if expires > 0 then
  for _, key in ipairs({jkey, tkey, skey, dkey}) do
    redis.call('EXPIRE', key, expires)
  end
end
local size = redis.call('GET', skey)
if not size then
  return {ready}
end
if ready < tonumber(size) + tonumber(redis.call('GET', tkey) or '0') then
  return {ready}
end
if not redis.call('SET', ckey, 'done', 'NX', 'EX', tonumber(ARGV[5])) then
  return {-1}
end
local parts = redis.call('ZRANGE', jkey, 0, -1)
redis.call('DEL', jkey, tkey, skey, dkey)
return {ready, parts}
"""


class RedisBackend(KeyValueBackend):
    """Results in Redis under celery-task-meta-<id>, pushed on the channel of the same name."""

    pushes_results = True

    def __init__(self, app: App, url: str) -> None:
        super().__init__(app, url)
        self.url: str = url
        try:
            import redis
        except ImportError:
            raise BackendError(
                "the redis result backend needs redis-py: pip install 'tq[redis]'"
            ) from None
        self._redis = redis
        self._client: Any = None
        self._pid: int | None = None
        self._store_script: Any = None
        self._chord_script: Any = None
        self._channels: ResultChannels | None = None

    @property
    def client(self) -> Any:
        """This process's redis client (a forked child makes its own)."""
        if self._client is None or self._pid != os.getpid():
            self._client = self._redis.Redis.from_url(
                self.url, socket_connect_timeout=5, **redis_client_identity()
            )
            self._store_script = self._client.register_script(_STORE_SCRIPT)
            self._chord_script = self._client.register_script(_CHORD_PART_SCRIPT)
            self._pid = os.getpid()
        return self._client

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._redis.RedisError as exc:
            raise BackendError(f"redis result backend {self.url}: {what} failed: {exc}") from exc

    def _unavailable(self, exc: BaseException) -> bool:
        """Whether exc means Redis could not be reached (worth trying again), not a refusal."""
        cause = exc.__cause__ if isinstance(exc, BackendError) else exc
        return isinstance(cause, (self._redis.ConnectionError, self._redis.TimeoutError))

    def get(self, key: str) -> bytes | None:
        return self._call("GET", self.client.get, key)

    def set(self, key: str, value: bytes | str, state: str) -> None:
        expires = int(self.expires_s) if self.expires_s else 0

        def store() -> None:
            script = self.client and self._store_script
            self._call("store", script, [key], [value, expires])

        # A worker keeps its results through a Redis restart (UNAVAILABLE_RETRY_S at most).
        retry_unavailable(store, self._unavailable)

    def delete(self, key: str) -> None:
        self._call("DEL", self.client.delete, key)

    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        # Redis away for a while (a restart) is waited out: subscribe again and read again.
        return retry_unavailable(
            lambda: self._wait_once(task_id, deadline), self._unavailable, deadline=deadline
        )

    def _wait_once(self, task_id: str, deadline: float | None) -> dict[str, Any]:
        key = TASK_KEY_PREFIX + task_id
        # Subscribed (and confirmed) first, then read: a result stored in between is pushed.
        with self._subscribed([key]) as subscription:
            [payload] = subscription.values
            meta = pending_meta(task_id) if payload is None else self.decode(payload)
            while meta.get("status") not in states.READY_STATES:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise_timeout()
                wait_s = 1.0 if remaining is None else min(1.0, remaining)
                message = self._call("listen", subscription.next_message, wait_s)
                if message is not None:
                    meta = self.decode(message)
                elif remaining is None:
                    meta = self.get_task_meta(task_id)
            return meta

    @contextmanager
    def _subscribed(self, keys: list[str]) -> Iterator[Subscription]:
        if self._channels is None:  # one subscriber connection per thread and process
            self._channels = ResultChannels(subscriber_factory(self.client))
        try:
            with self._channels.subscribed(keys, read_elsewhere=self.client.mget) as subscription:
                yield subscription
        except self._redis.RedisError as exc:
            raise BackendError(f"redis result backend {self.url}: SUBSCRIBE failed: {exc}") from exc

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        payload = self.get(TASK_KEY_PREFIX + task_id)
        return pending_meta(task_id) if payload is None else self.decode(payload)

    def get_many_meta(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not task_ids:
            return {}
        payloads = self._call("MGET", self.client.mget, [TASK_KEY_PREFIX + i for i in task_ids])
        return {
            task_id: pending_meta(task_id) if payload is None else self.decode(payload)
            for task_id, payload in zip(task_ids, payloads, strict=True)
        }

    def wait_for_many(
        self,
        task_ids: list[str],
        timeout: float | None = None,
        interval: float = 0.5,
        stop_on_failure: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """Subscribe to every pending result, read them all once, then take the pushes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return retry_unavailable(
            lambda: self._wait_many_once(task_ids, deadline, stop_on_failure),
            self._unavailable,
            deadline=deadline,
        )

    def _wait_many_once(
        self, task_ids: list[str], deadline: float | None, stop_on_failure: bool
    ) -> dict[str, dict[str, Any]]:
        keys = [TASK_KEY_PREFIX + task_id for task_id in task_ids]
        with self._subscribed(keys) as subscription:
            metas = {
                task_id: pending_meta(task_id) if payload is None else self.decode(payload)
                for task_id, payload in zip(task_ids, subscription.values, strict=True)
            }
            pending = {i for i, meta in metas.items() if meta["status"] not in states.READY_STATES}
            refreshed = time.monotonic()
            while pending:
                if stop_on_failure and _any_failed(metas):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise_timeout()
                wait_s = 1.0 if remaining is None else min(1.0, remaining)
                message = self._call("listen", subscription.next_message, wait_s)
                if message is not None:
                    meta = self.decode(message)
                    task_id = meta.get("task_id")
                    if task_id in pending:
                        metas[task_id] = meta
                        if meta.get("status") in states.READY_STATES:
                            pending.discard(task_id)
                elif time.monotonic() - refreshed >= 1.0:
                    # A safety net only: every result is pushed on a confirmed subscription.
                    refreshed = time.monotonic()
                    metas.update(self.get_many_meta(sorted(pending)))
                    pending = {i for i in pending if metas[i]["status"] not in states.READY_STATES}
            return metas

    # -- chords ------------------------------------------------------------------------------

    def set_chord_size(self, group_id: str, size: int) -> None:
        key = GROUP_KEY_PREFIX + group_id
        expires = int(self.expires_s) if self.expires_s else None
        with self.client.pipeline() as pipe:
            # Sending a frozen chord again reuses its group id: it is a new run.
            pipe.delete(key + ".c")
            pipe.set(key + ".s", size, ex=expires)
            self._call("chord size", pipe.execute)

    def on_chord_part_return(
        self, request: TaskRequest, state: str, result: Any
    ) -> ChordReady | None:
        group_id, task_id = request.group_id, request.id
        if not group_id:
            return None
        index = request.group_index
        score = "+inf" if index is None else str(index)
        prefix = GROUP_KEY_PREFIX + group_id
        encoded = self.encode([1, task_id, state, part_result(result, state)])
        keys = [prefix + ".j", prefix + ".t", prefix + ".s", prefix + ".d", prefix + ".c"]
        arguments = [
            f"{task_id}:{score}",
            encoded,
            score,
            int(self.expires_s) if self.expires_s else 0,
            CHORD_DONE_EXPIRES_S,
        ]

        def count_part() -> Any:
            self.client  # noqa: B018 - makes sure the scripts are registered in this process
            return self._call("chord part", self._chord_script, keys, arguments)

        # Safe to run again: the part's <id>:<index> is recorded once (the .d set).
        answer = retry_unavailable(count_part, self._unavailable)
        if len(answer) < 2:
            return None
        parts = []
        for payload in answer[1]:
            _version, part_id, part_state, value = self.decode(payload)
            parts.append(ChordPart(part_id, part_state, value))
        ready = join_chord_parts(parts)
        if ready.error is not None:
            ready = self._name_failed_part(ready, parts)
        return ready

    def _name_failed_part(self, ready: ChordReady, parts: list[ChordPart]) -> ChordReady:
        # The ZSET entry has no task name (Celery's layout); the meta has, with result_extended.
        failed = next(p for p in parts if p.state in states.PROPAGATE_STATES)
        try:
            name = self.get_task_meta(failed.task_id).get("name")
        except BackendError:
            name = None
        if not name:
            return ready
        return join_chord_parts([ChordPart(failed.task_id, failed.state, failed.result, name)])

    def close(self) -> None:
        if self._channels is not None:
            self._channels.drop()
        if self._client is not None:
            self._client.close()
            self._client = None


def _any_failed(metas: dict[str, dict[str, Any]]) -> bool:
    return any(meta.get("status") in states.PROPAGATE_STATES for meta in metas.values())
