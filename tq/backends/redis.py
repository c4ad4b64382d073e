"""Redis result backend: SETEX + PUBLISH per state, clients wait on the channel."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from .. import states
from ..errors import BackendError
from .base import TASK_KEY_PREFIX, KeyValueBackend, pending_meta, raise_timeout

if TYPE_CHECKING:
    from ..app import App

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

    @property
    def client(self) -> Any:
        """This process's redis client (a forked child makes its own)."""
        if self._client is None or self._pid != os.getpid():
            self._client = self._redis.Redis.from_url(self.url, socket_connect_timeout=5)
            self._store_script = self._client.register_script(_STORE_SCRIPT)
            self._pid = os.getpid()
        return self._client

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._redis.RedisError as exc:
            raise BackendError(f"redis result backend {self.url}: {what} failed: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        return self._call("GET", self.client.get, key)

    def set(self, key: str, value: bytes | str, state: str) -> None:
        expires = int(self.expires_s) if self.expires_s else 0
        script = self.client and self._store_script
        self._call("store", script, [key], [value, expires])

    def delete(self, key: str) -> None:
        self._call("DEL", self.client.delete, key)

    def wait_for(
        self, task_id: str, timeout: float | None = None, interval: float = 0.5
    ) -> dict[str, Any]:
        key = TASK_KEY_PREFIX + task_id
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            # Subscribe first, then read: a result stored in between is not missed.
            self._call("SUBSCRIBE", pubsub.subscribe, key)
            meta = self.get_task_meta(task_id)
            while meta.get("status") not in states.READY_STATES:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise_timeout()
                wait_s = 1.0 if remaining is None else min(1.0, remaining)
                message = self._call("listen", pubsub.get_message, False, wait_s)
                if message is not None and message.get("type") == "message":
                    meta = self.decode(message["data"])
                elif message is None and remaining is None:
                    meta = self.get_task_meta(task_id)
            return meta
        finally:
            try:
                pubsub.close()
            except Exception:
                pass

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        payload = self.get(TASK_KEY_PREFIX + task_id)
        return pending_meta(task_id) if payload is None else self.decode(payload)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
