"""kombu transport for the embedded broker: one SQLite file shared by a machine's processes.

URLs: everything after ``sqlite://`` is the file path, taken literally (no %-decoding, no
query string), as in tq's result backend URL: ``sqlite:///abs/path/broker.db`` and
``sqlite:////abs/path/broker.db`` (SQLAlchemy's spelling) both name ``/abs/path/broker.db``;
``sqlite://relative/path.db`` is relative to the working directory; ``~`` is expanded.

Transport options: ``polling_interval`` (longest idle sleep between polls, s),
``visibility_timeout`` (s after delivery, or after its holder last renewed it, an unacked
message is handed out again even if its holder lives; a worker renews its messages every
quarter of it), ``orphan_check_interval`` (s between checks for unacked messages whose holder
process died), ``busy_timeout`` (s to wait for another process's write lock).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from queue import Empty
from typing import Any

import psutil
from kombu.transport import virtual

from ..errors import DataDirError
from . import LEASE_RENEWALS_PER_TIMEOUT
from .hub_poller import MIN_POLL_BACKOFF_S, HubPoller
from .sqlite_channel import CLAIM_COALESCE_S, Channel
from .sqlite_schema import DEFAULT_BUSY_TIMEOUT_S, Holder
from .sqlite_store import BrokerStore

logger = logging.getLogger("tq.transports.sqlite")

#: Longest sleep between polls of an idle consumer (transport option polling_interval).
DEFAULT_POLLING_INTERVAL_S = 0.05
#: An unacked message is redelivered this long after delivery, or after its holder last renewed
#: it (a consumer under a hub renews every quarter of it), even if its holder lives.
DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
#: How often a polling process looks for unacked messages of dead processes.
DEFAULT_ORPHAN_CHECK_INTERVAL_S = 1.0
#: Two create times closer than this are the same process (psutil rounds to clock ticks).
CREATE_TIME_TOLERANCE_S = 0.05


def _claim_soon(waits: list[float | None], delivered: int) -> bool:
    """Whether a claim transaction is due within CLAIM_COALESCE_S, from the channels' waits
    (poll_wait_s) after a poller pass that delivered this many messages: a channel holding its
    claim back for more acks claims within it; a channel that can take messages now claims on
    the poller's next pass, which comes at once only if this one delivered some (a channel
    without a prefetch limit, such as a worker's control queue, can always take one)."""
    if any(wait is not None and 0 < wait <= CLAIM_COALESCE_S for wait in waits):
        return True
    return delivered > 0 and any(wait is None for wait in waits)


def database_path(url: str) -> Path:
    """Return the broker file a sqlite:// URL names (see the module docstring)."""
    path = url.split("://", 1)[1] if "://" in url else url
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # sqlite:////abs/x.db, the SQLAlchemy spelling
    if not path.strip("/"):
        raise DataDirError(
            f"the broker URL {url!r} names no file: use sqlite:///absolute/path/broker.db"
        )
    return Path(path).expanduser()


def holder_is_alive(pid: int, started: float) -> bool:
    """Return whether process pid is still the one that was created at time started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user: psutil can still read its create time
    try:
        process = psutil.Process(pid)
        # A SIGKILLed child its parent has not reaped yet still answers kill(pid, 0).
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - started) < CREATE_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: never hand out a message a live process may hold


class Transport(virtual.Transport):
    """The embedded SQLite broker, usable blocking (drain_events) or under a kombu Hub."""

    Channel = Channel
    # kombu then keeps the whole URL in client.hostname, case and all, for database_path.
    can_parse_url = True
    polling_interval = DEFAULT_POLLING_INTERVAL_S
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    # A lock held past busy_timeout or a disk I/O error: worth reconnecting.
    connection_errors: Any = (*virtual.Transport.connection_errors, sqlite3.OperationalError)
    cycle: Any  # kombu's FairCycle over channels, set in __init__
    channels: Any  # list of this connection's channels, set in __init__

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.path = database_path(client.hostname or "")
        self.visibility_timeout_s = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S)
        )
        self.orphan_check_interval_s = float(
            options.get("orphan_check_interval", DEFAULT_ORPHAN_CHECK_INTERVAL_S)
        )
        self.busy_timeout_s = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT_S))
        self._store: BrokerStore | None = None
        self._holder: Holder | None = None
        self._next_orphan_check = 0.0
        self._hub_poller: HubPoller | None = None
        self._renewer: Any = None
        self._idle_backoff_s = MIN_POLL_BACKOFF_S
        self._waits_after_drain: list[float | None] | None = None

    @property
    def store(self) -> BrokerStore:
        """The open store; opened by establish_connection."""
        if self._store is None:
            self._store = BrokerStore(self.path, busy_timeout_s=self.busy_timeout_s)
        return self._store

    @property
    def holder(self) -> Holder:
        """(pid, create time) of this process, recorded on every message it holds."""
        pid = os.getpid()
        if self._holder is None or self._holder[0] != pid:
            self._holder = (pid, psutil.Process(pid).create_time())
        return self._holder

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        """Show the URL as given: it holds no password."""
        return uri

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def establish_connection(self) -> Transport:
        """Open and check the database file (DataDirError if unusable), then a channel."""
        _ = self.store
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        """Stop hub polling, close channels (restoring their unacked messages), close the file."""
        if self._hub_poller is not None:
            self._hub_poller.close()
            self._hub_poller = None
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        super().close_connection(connection)
        if self._store is not None:
            self._store.close()
            if not self._store.pending_acks:  # else kept: the next use writes them
                self._store = None

    # -- polling ---------------------------------------------------------------------------

    def restore_orphans(self) -> int:
        """Requeue unacked messages of dead processes and past the visibility timeout."""
        self._next_orphan_check = time.monotonic() + self.orphan_check_interval_s
        now = time.time()
        return self.store.sweep(
            own=self.holder,
            is_alive=holder_is_alive,
            visible_before=now - self.visibility_timeout_s,
            now=now,
        )

    def maybe_restore_orphans(self) -> None:
        """Run restore_orphans if orphan_check_interval has passed since the last run."""
        if time.monotonic() >= self._next_orphan_check:
            self.restore_orphans()

    def drain_nowait(self, limit: int) -> int:
        """Deliver up to limit ready messages to their consumers; return how many."""
        delivered = 0
        while delivered < limit:
            try:
                self.cycle.get(self._deliver, timeout=0)
            except Empty:
                break
            delivered += 1
        # Acks deferred since the last transaction are written before the hub sleeps, unless
        # a claim transaction (which writes them too) comes soon.
        waits = self._waits_after_drain = self._consumer_waits()
        if self._store is not None and not _claim_soon(waits, delivered):
            self._store.flush_acks()
        return delivered

    def consumers_wait_s(self) -> float | None:
        """None if some consumer could take a message now; else how long until one can (inf:
        not before an ack frees prefetch room). Right after drain_nowait (the hub poller's
        question), its channels' waits are used rather than worked out a second time."""
        waits, self._waits_after_drain = self._waits_after_drain, None
        if waits is None:
            waits = self._consumer_waits()
        if not waits or any(wait is None for wait in waits):
            return None
        return min(wait for wait in waits if wait is not None)

    def _consumer_waits(self) -> list[float | None]:
        return [channel.poll_wait_s() for channel in self.channels if channel._consumers]

    def defer_ack(self, tag: str) -> bool:
        """Leave tag's ack to the hub poller's next pass (and wake it); False without a hub."""
        if self._hub_poller is None or self._store is None:
            return False
        self._store.defer_ack(tag)
        self._hub_poller.arm()
        return True

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver one message, sleeping 1 ms doubling to polling_interval while none come."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.maybe_restore_orphans()
            if self.drain_nowait(1):
                self._idle_backoff_s = MIN_POLL_BACKOFF_S
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()  # socket.timeout, what kombu callers catch
            # The backoff outlives the call: a caller draining with short timeouts in a loop
            # (a monitor) must not restart at 1 ms polls each time.
            backoff_s = self._idle_backoff_s
            time.sleep(backoff_s if deadline is None else min(backoff_s, deadline - now))
            self._idle_backoff_s = min(backoff_s * 2, self.polling_interval)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Consume under a kombu Hub (see HubPoller), renewing the messages this process holds
        every quarter of the visibility timeout: only a holder that died or hung loses them."""
        if self._hub_poller is not None:
            self._hub_poller.close()
        self._hub_poller = HubPoller(self, loop)
        self.store.checkpoint_in_thread()
        if self._renewer is not None:
            self._renewer.cancel()
        interval_s = self.visibility_timeout_s / LEASE_RENEWALS_PER_TIMEOUT
        self._renewer = loop.call_repeatedly(interval_s, self.renew_claims)

    def renew_claims(self) -> None:
        """Restart the visibility timeout of every message this process holds."""
        try:
            self.store.renew(self.holder, time.time())
        except self.connection_errors as exc:  # the next renewal tries again
            logger.warning("could not renew the claims of held messages: %r", exc)

    def on_capacity_freed(self) -> None:
        """Wake the hub poller if it stopped because prefetch was full."""
        if self._hub_poller is not None:
            self._hub_poller.on_capacity_freed()
