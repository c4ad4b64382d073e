"""SQL layer of the embedded broker: ready, unacked and binding rows in one SQLite file."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

from .sqlite_checkpoint import Checkpointer
from .sqlite_schema import (
    AUTOCHECKPOINT_PAGES,
    DEFAULT_BUSY_TIMEOUT_S,
    Holder,
    NewMessage,
    database_error,
    open_broker_database,
)

logger = logging.getLogger("tq.transports.sqlite")

_INSERT_AT_TAIL = """
INSERT INTO messages (queue, priority, seq, payload, expires_at) VALUES (?1, ?2,
    (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE queue = ?1 AND priority = ?2), ?3, ?4)
"""

# A restored message goes back to the head of its priority level and says it was redelivered.
_INSERT_AT_HEAD = """
INSERT INTO messages (queue, priority, seq, payload, expires_at) VALUES (?1, ?2,
    (SELECT COALESCE(MIN(seq), 0) - 1 FROM messages WHERE queue = ?1 AND priority = ?2),
    json_set(?3, '$.properties.delivery_info.redelivered', json('true')), ?4)
"""

_HEADS = """
SELECT id, priority, payload, expires_at FROM messages
WHERE queue = ?1 AND (expires_at IS NULL OR expires_at > ?2)
ORDER BY priority DESC, seq LIMIT ?3
"""


class BrokerStore:
    """One process's connection to the broker file; each method is one short transaction."""

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        # Acks may come from another thread than the consuming one.
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._connection_pid = 0
        self._synchronous = ""
        # Acks the hub loop gave us; written by the next transaction (see defer_ack).
        self._deferred_acks: list[str] = []
        # Transactions committed (read by the checkpointer thread, if one runs).
        self.commits = 0
        self._checkpointer: Checkpointer | None = None
        self._tag_pid, self._tag_prefix, self._tag_count = 0, "", 0
        self._db()

    def _db(self) -> sqlite3.Connection:
        # A SQLite handle must not cross fork(): a child opens its own.
        if self._connection is None or self._connection_pid != os.getpid():
            self._connection = open_broker_database(self.path, busy_timeout_s=self.busy_timeout_s)
            self._connection_pid = os.getpid()
            self._synchronous = ""
            if self._checkpointer is not None and self._checkpointer.owned_here():
                self._connection.execute("PRAGMA wal_autocheckpoint=0")
        return self._connection

    def checkpoint_in_thread(self) -> None:
        """Checkpoint the WAL from a thread instead of inside this connection's commits (see
        sqlite_checkpoint): for a worker's hub loop, whose commits should not wait for it."""
        with self._lock:
            if self._checkpointer is not None and self._checkpointer.owned_here():
                return
            self._checkpointer = Checkpointer(
                self.path,
                lambda: self.commits,
                self._checkpoint_in_commits,
                busy_timeout_s=self.busy_timeout_s,
            )
            self._db().execute("PRAGMA wal_autocheckpoint=0")

    def _stop_checkpointer(self) -> None:
        with self._lock:
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()  # not under the lock: the thread takes it when it fails

    def _checkpoint_in_commits(self) -> None:
        """Give checkpoints back to this connection's commits (SQLite's default)."""
        self._stop_checkpointer()
        with self._lock:
            if self._connection is not None and self._connection_pid == os.getpid():
                self._connection.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE, committed FULL if durable else NORMAL."""
        with self._lock, self._damage_reported():
            db = self._db()
            synchronous = "FULL" if durable else "NORMAL"
            if synchronous != self._synchronous:
                db.execute(f"PRAGMA synchronous={synchronous}")
                self._synchronous = synchronous
            db.execute("BEGIN IMMEDIATE")
            acks = len(self._deferred_acks)
            try:
                if acks:
                    db.executemany(
                        "DELETE FROM unacked WHERE tag = ?",
                        [(tag,) for tag in self._deferred_acks[:acks]],
                    )
                yield db
                db.execute("COMMIT")
                self.commits += 1
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            del self._deferred_acks[:acks]

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple]:
        with self._lock, self._damage_reported():
            return self._db().execute(sql, parameters).fetchall()

    @contextmanager
    def _damage_reported(self) -> Iterator[None]:
        """Turn a damaged file's error (SQLITE_CORRUPT, SQLITE_NOTADB) into DataDirError: one
        line naming the file and the fix, not a traceback; it is no connection error either."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            raise database_error(self.path, exc) from None

    def close(self) -> None:
        """Write deferred acks, then close this process's connection (a later call reopens it,
        checkpointing in its commits). Acks the file refuses now (locked past busy_timeout, a
        full disk) stay pending: the next transaction, on a reopened connection, writes them."""
        self._stop_checkpointer()
        with self._lock:
            if self._connection is not None and self._connection_pid == os.getpid():
                try:
                    self.flush_acks()
                except sqlite3.Error as exc:
                    logger.warning(
                        "could not write %d ack(s) to the embedded broker yet (%r): kept for "
                        "its next transaction",
                        len(self._deferred_acks),
                        exc,
                    )
                finally:
                    self._connection.close()
                    self._connection = None
            elif self._connection_pid != os.getpid():
                self._deferred_acks.clear()  # another process's (inherited across fork)
            self._connection = None

    @property
    def pending_acks(self) -> int:
        """Acks deferred and not written yet."""
        return len(self._deferred_acks)

    # -- messages ------------------------------------------------------------------------

    def put(self, messages: Sequence[NewMessage], *, durable: bool) -> None:
        """Append each message to the tail of each of its queues, all in one transaction."""
        with self._transaction(durable=durable) as db:
            for queues, priority, payload, now, expires_at in messages:
                for queue in queues:
                    # A queue's x-message-ttl and the message's own expiration: the sooner wins.
                    row = db.execute(
                        "SELECT message_ttl_s FROM queues WHERE name = ?", (queue,)
                    ).fetchone()
                    deadlines = [expires_at, now + row[0] if row and row[0] is not None else None]
                    deadline = min((d for d in deadlines if d is not None), default=None)
                    db.execute(_INSERT_AT_TAIL, (queue, priority, payload, deadline))

    def claim(
        self, queue: str, *, count: int, keep_unacked: bool, holder: Holder, now: float
    ) -> list[tuple[str | None, str]]:
        """Take up to count head messages of queue as (tag, payload), first first.

        With keep_unacked each is kept in the unacked table under a fresh tag until acked;
        otherwise it is gone once taken (tag None).
        """
        # A read needs no write lock, so idle pollers do not queue behind producers.
        if not self._read("SELECT 1 FROM messages WHERE queue = ? LIMIT 1", (queue,)):
            return []
        with self._transaction() as db:
            rows = db.execute(_HEADS, (queue, now, count)).fetchall()
            if not rows:
                return []
            db.executemany("DELETE FROM messages WHERE id = ?", [(row[0],) for row in rows])
            if not keep_unacked:
                return [(None, row[2]) for row in rows]
            # A fresh tag per delivery: fanout copies share the publish-time tag.
            tags = self._new_tags(len(rows))
            # Restores order by delivered_at: a microsecond apart keeps the batch's order.
            db.executemany(
                "INSERT INTO unacked VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (tag, queue, priority, payload, expires_at, *holder, now + index * 1e-6)
                    for index, (tag, (_id, priority, payload, expires_at)) in enumerate(
                        zip(tags, rows, strict=True)
                    )
                ],
            )
        return [(tag, row[2]) for tag, row in zip(tags, rows, strict=True)]

    def _new_tags(self, count: int) -> list[str]:
        """count delivery tags never used before (inside a transaction): this process's random
        prefix and a counter (a uuid4 each cost more than the rest of a claim's Python code).
        Zero-padded, a process's tags sort in claim order, so the unacked table grows at one end
        and shrinks at the other instead of splitting pages all over (claims ~8 % cheaper)."""
        pid = self._connection_pid  # a claim's transaction has just checked it (_db)
        if self._tag_pid != pid:
            self._tag_pid, self._tag_prefix, self._tag_count = pid, uuid4().hex[:20], 0
        first = self._tag_count
        self._tag_count += count
        return [f"{self._tag_prefix}{number:012x}" for number in range(first, first + count)]

    def ack(self, tags: Sequence[str]) -> None:
        """Forget unacked messages for good."""
        with self._transaction() as db:
            db.executemany("DELETE FROM unacked WHERE tag = ?", [(tag,) for tag in tags])

    def defer_ack(self, tag: str) -> None:
        """Ack tag with the next transaction; the caller promises one soon (flush_acks)."""
        with self._lock:
            self._deferred_acks.append(tag)

    def flush_acks(self) -> None:
        """Write the deferred acks now, if there are any."""
        with self._lock:
            if self._deferred_acks:
                with self._transaction():
                    pass  # _transaction writes them

    def restore(self, tags: Sequence[str]) -> int:
        """Put unacked messages back at the head of their queues, first tag first."""
        with self._transaction() as db:
            return _move_back(db, tags)

    def sweep(
        self,
        *,
        own: Holder,
        is_alive: Callable[[int, float], bool],
        visible_before: float,
        now: float,
    ) -> int:
        """Drop expired messages; restore those of dead holders or delivered before visible_before."""
        if self._read("SELECT 1 FROM messages WHERE expires_at <= ? LIMIT 1", (now,)):
            with self._transaction() as db:
                db.execute("DELETE FROM messages WHERE expires_at <= ?", (now,))
        holders = self._read("SELECT DISTINCT holder_pid, holder_started FROM unacked")
        dead = [
            (pid, started)
            for pid, started in holders
            if (pid, started) != own and not is_alive(pid, started)
        ]
        expired = self._read(
            "SELECT 1 FROM unacked WHERE delivered_at < ? LIMIT 1", (visible_before,)
        )
        if not dead and not expired:
            return 0
        with self._transaction() as db:
            tags = [
                tag
                for (tag,) in db.execute(
                    "SELECT tag FROM unacked WHERE delivered_at < ? ORDER BY delivered_at",
                    (visible_before,),
                )
            ]
            for pid, started in dead:
                tags += [
                    tag
                    for (tag,) in db.execute(
                        "SELECT tag FROM unacked WHERE holder_pid = ? AND holder_started = ?"
                        " ORDER BY delivered_at",
                        (pid, started),
                    )
                ]
            return _move_back(db, list(dict.fromkeys(tags)))

    def renew(self, holder: Holder, now: float) -> int:
        """Shift the delivery times of holder's messages so that the oldest is now (in order)."""
        where = "WHERE holder_pid = ? AND holder_started = ?"
        with self._transaction() as db:
            row = db.execute(f"SELECT MIN(delivered_at) FROM unacked {where}", holder).fetchone()
            if row[0] is None or row[0] >= now:
                return 0
            shift = (now - row[0], *holder)
            sql = f"UPDATE unacked SET delivered_at = delivered_at + ? {where}"
            return db.execute(sql, shift).rowcount

    def size(self, queue: str) -> int:
        """Return the number of ready (not unacked) messages in queue."""
        return self._read("SELECT COUNT(*) FROM messages WHERE queue = ?", (queue,))[0][0]

    def unacked_size(self, queue: str) -> int:
        """Return the number of messages of queue delivered but not yet acked."""
        return self._read("SELECT COUNT(*) FROM unacked WHERE queue = ?", (queue,))[0][0]

    def purge(self, queue: str) -> int:
        """Delete the ready messages of queue; return how many."""
        with self._transaction() as db:
            return db.execute("DELETE FROM messages WHERE queue = ?", (queue,)).rowcount

    # -- queues, exchanges, bindings -----------------------------------------------------

    def declare_queue(self, queue: str, *, message_ttl_s: float | None = None) -> None:
        """Record that queue exists, with the x-message-ttl of its latest declaration."""
        if self._read("SELECT message_ttl_s FROM queues WHERE name = ?", (queue,)) != [
            (message_ttl_s,)
        ]:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO queues VALUES (?1, ?2)"
                    " ON CONFLICT (name) DO UPDATE SET message_ttl_s = ?2",
                    (queue, message_ttl_s),
                )

    def has_queue(self, queue: str) -> bool:
        """Return whether queue was declared (and not deleted)."""
        return bool(self._read("SELECT 1 FROM queues WHERE name = ?", (queue,)))

    def delete_queue(self, queue: str) -> None:
        """Delete queue with its ready and unacked messages and its bindings."""
        with self._transaction() as db:
            for table, column in (
                ("messages", "queue"),
                ("unacked", "queue"),
                ("bindings", "queue"),
                ("queues", "name"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (queue,))

    def declare_exchange(self, exchange: str, exchange_type: str) -> str:
        """Record exchange unless it exists; return the type it has in the database."""
        stored = self.exchange_type(exchange)
        if stored is None:
            with self._transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO exchanges VALUES (?, ?)", (exchange, exchange_type)
                )
                stored = db.execute(
                    "SELECT type FROM exchanges WHERE name = ?", (exchange,)
                ).fetchone()[0]
        return stored

    def exchange_type(self, exchange: str) -> str | None:
        """Return the declared type of exchange, or None if it was never declared."""
        rows = self._read("SELECT type FROM exchanges WHERE name = ?", (exchange,))
        return rows[0][0] if rows else None

    def delete_exchange(self, exchange: str) -> None:
        """Delete exchange and its bindings."""
        with self._transaction() as db:
            db.execute("DELETE FROM bindings WHERE exchange = ?", (exchange,))
            db.execute("DELETE FROM exchanges WHERE name = ?", (exchange,))

    def bind(
        self, exchange: str, exchange_type: str, routing_key: str, pattern: str | None, queue: str
    ) -> None:
        """Bind queue to exchange under routing_key (pattern is the topic regex, if any)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?)",
                (exchange, exchange_type, routing_key, pattern, queue),
            )

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        """Remove one binding."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM bindings WHERE exchange = ? AND routing_key = ? AND queue = ?",
                (exchange, routing_key, queue),
            )

    def bindings(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """Return exchange's bindings as (routing_key, pattern, queue), kombu's table rows."""
        return self._read(
            "SELECT routing_key, pattern, queue FROM bindings WHERE exchange = ?", (exchange,)
        )

    def all_bindings(self) -> list[tuple[str, str, str]]:
        """Return every binding as (queue, exchange, routing_key)."""
        return self._read("SELECT queue, exchange, routing_key FROM bindings")


def _move_back(db: sqlite3.Connection, tags: Sequence[str]) -> int:
    """Move unacked rows back to the head of their queues so tags[0] ends up first."""
    moved = 0
    # Inserting each at the head reverses the order, so walk the tags backwards.
    for tag in reversed(tags):
        rows = db.execute(
            "DELETE FROM unacked WHERE tag = ? RETURNING queue, priority, payload, expires_at",
            (tag,),
        ).fetchall()
        if rows:
            db.execute(_INSERT_AT_HEAD, rows[0])
            moved += 1
    return moved


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is damaged or no database (not a lock, a full disk, a bug)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return type(exc) is sqlite3.DatabaseError
