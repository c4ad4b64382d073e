"""The brokers the benchmark runs on: URLs, completion counters, clean-up and server versions."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

#: Redis databases of the benchmark (the integration tests use 3 and 4).
REDIS_BROKER_DB = 8
REDIS_RESULT_DB = 9
REDIS_URL = "redis://127.0.0.1:6379"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: How long to wait for a broker to answer before giving up on the run.
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class BrokerProfile:
    """One broker choice: where tasks and results go, and which systems can run on it."""

    name: str
    broker_url: str | None  # None: tq's embedded SQLite broker and result store
    result_backend: str | None
    systems: tuple[str, ...]


PROFILES: dict[str, BrokerProfile] = {
    "redis": BrokerProfile(
        "redis",
        f"{REDIS_URL}/{REDIS_BROKER_DB}",
        f"{REDIS_URL}/{REDIS_RESULT_DB}",
        systems=("tq", "celery", "dramatiq"),
    ),
    "amqp": BrokerProfile("amqp", AMQP_URL, "rpc://", systems=("tq", "celery", "dramatiq")),
    "embedded": BrokerProfile("embedded", None, None, systems=("tq",)),
}


def run_queue_name(run_id: str, system: str) -> str:
    """Return the task queue one system uses in this run."""
    return f"{run_id}-{system}"


def declared_queue_names(run_id: str, system: str) -> list[str]:
    """Return every queue one system declares in this run, to delete them afterwards."""
    queue = run_queue_name(run_id, system)
    if system == "dramatiq":
        # Beside each queue Dramatiq declares its delay (.DQ) and dead-letter (.XQ) queues.
        return [queue, f"{queue}.DQ", f"{queue}.XQ"]
    return [queue]


def dramatiq_broker_url(profile: BrokerProfile) -> str:
    """Return the profile's broker URL as Dramatiq's clients read it."""
    if profile.name == "amqp":
        # pika reads kombu's "//" as the vhost "", not "/": it wants "/" quoted.
        return AMQP_URL.removesuffix("//") + "/%2F"
    return str(profile.broker_url)


def dramatiq_namespace(run_id: str) -> str:
    """Return the prefix of Dramatiq's Redis keys in this run (it holds the run id)."""
    return f"dramatiq-{run_id}"


def embedded_broker_missing() -> str | None:
    """Return why tq's embedded broker cannot be used here, or None if it can."""
    import tq  # a broken tq is a failure, not a reason to skip: let it raise

    del tq
    try:
        import tq.transports  # noqa: F401
    except ImportError as exc:
        return f"tq.transports does not import ({exc})"
    return None


def check_broker(profile: BrokerProfile) -> str:
    """Connect once and return the broker server's name and version; raise if it is down."""
    if profile.broker_url is None:
        return f"SQLite {sqlite3.sqlite_version}, embedded"
    if profile.name == "redis":
        import redis

        client = redis.Redis.from_url(profile.broker_url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        try:
            return f"Redis {client.info('server')['redis_version']}"
        finally:
            client.close()
    from kombu import Connection

    with Connection(profile.broker_url, connect_timeout=CONNECT_TIMEOUT_S) as connection:
        connection.ensure_connection(max_retries=1)
        properties = connection.connection.server_properties
        product = properties.get("product", "AMQP")
        return f"{product} {properties.get('version', '?')}"


def delete_run_queues(profile: BrokerProfile, *, queue_names: list[str], run_id: str) -> None:
    """Delete the run's queues (and their exchanges and counters) from the broker."""
    if profile.name == "redis":
        import redis

        client = redis.Redis.from_url(str(profile.broker_url))
        try:
            # Queue lists, their priority lists, kombu's binding sets, Dramatiq's keys (under
            # its namespace) and the counters all carry the run id in their key; nothing else.
            doomed = list(client.scan_iter(match=f"*{run_id}*", count=1000))
            if doomed:
                client.delete(*doomed)
        finally:
            client.close()
    elif profile.name == "amqp":
        from kombu import Connection

        with Connection(profile.broker_url, connect_timeout=CONNECT_TIMEOUT_S) as connection:
            channel = connection.default_channel
            for name in queue_names:
                channel.queue_delete(name)
                # Both Celery and tq bind a task queue to a direct exchange of the same name
                # (Dramatiq publishes to the default exchange; deleting a missing one is a no-op).
                channel.exchange_delete(name)
    # embedded: the queues live in the run directory, which run.py removes.


class RedisCounter:
    """Executed no-op tasks, counted by the tasks with INCR on a per-run key."""

    def __init__(self, redis_url: str, key: str) -> None:
        import redis

        self.redis_url = redis_url
        self.key = key
        self._client = redis.Redis.from_url(redis_url)

    def worker_env(self) -> dict[str, str]:
        """Return the variables that make the worker's no-op task count here."""
        return {"BENCH_REDIS_URL": self.redis_url, "BENCH_COUNTER_KEY": self.key}

    def read(self) -> int:
        """Return the number of no-op tasks executed so far."""
        return int(self._client.get(self.key) or 0)

    def close(self) -> None:
        self._client.close()


class LedgerCounter:
    """Executed no-op tasks, counted as bytes the tasks append to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def worker_env(self) -> dict[str, str]:
        """Return the variables that make the worker's no-op task count here."""
        return {"BENCH_LEDGER": str(self.path)}

    def read(self) -> int:
        """Return the number of no-op tasks executed so far."""
        return os.stat(self.path).st_size

    def close(self) -> None:
        pass


def make_counter(
    profile: BrokerProfile, *, run_dir: Path, run_id: str, system: str
) -> RedisCounter | LedgerCounter:
    """Return the completion counter of one system on this broker."""
    if profile.name == "redis":
        return RedisCounter(str(profile.broker_url), f"bench:count:{run_id}:{system}")
    return LedgerCounter(run_dir / f"{system}.ledger")
