"""SQL layer of the embedded broker: ready, unacked and binding rows in one SQLite file."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

from ..errors import DataDirError

#: Seconds a process waits for another process's write lock before giving up.
DEFAULT_BUSY_TIMEOUT_S = 30.0
#: Bumped when the tables change shape; an older file is refused, not silently misread.
SCHEMA_VERSION = 1

# Durability: a publish of a persistent message commits with synchronous=FULL, so it is on
# disk when publish() returns (WAL fsync per commit: ~5,800 commits/s measured on this
# machine's ext4/virtio disk). Claims, acks, restores and transient messages (AMQP
# delivery_mode 1, e.g. events) commit with NORMAL (~59,000 commits/s): after a power loss
# they can only roll back to an earlier consistent state, which re-delivers a message
# (at-least-once) but never loses one, and the next FULL commit syncs them anyway because the
# WAL is written in order.

# unacked holds at most the prefetch windows of live consumers: scans beat extra indexes
# written on every claim and ack. bindings is a rowid table because SQLite 3.40's quick_check
# wrongly reports NULLs in a WITHOUT ROWID table whose NOT NULL columns precede its key.
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS messages_by_order ON messages (queue, priority DESC, seq);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS unacked (
    tag TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload TEXT NOT NULL,
    expires_at REAL,
    holder_pid INTEGER NOT NULL,
    holder_started REAL NOT NULL,
    delivered_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    message_ttl_s REAL
);
CREATE TABLE IF NOT EXISTS exchanges (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    exchange TEXT NOT NULL,
    type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, queue)
);
CREATE INDEX IF NOT EXISTS bindings_by_queue ON bindings (queue);
PRAGMA user_version = {SCHEMA_VERSION};
"""

#: A message to put: (queues, priority, payload, put at (epoch s), expires at (epoch s) or None).
NewMessage = tuple[Sequence[str], int, str, float, float | None]

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

#: (pid, process create time) of the process holding an unacked message.
Holder = tuple[int, float]


def database_error(path: Path, exc: BaseException) -> DataDirError:
    """Turn an OS or SQLite failure on the broker file into one error naming path and fix."""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        # SQLITE_NOTADB / SQLITE_CORRUPT: the file exists but is not a usable database.
        return DataDirError(
            f"the embedded broker database {path} is corrupt or not a SQLite file ({exc}); "
            "move it away (a new empty broker is created in its place) or restore a backup"
        )
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason = f"{exc.filename or path.parent} is not a directory"
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = str(exc)
    return DataDirError(
        f"cannot open the embedded broker database {path}: {reason}; make {path.parent} "
        "a writable directory on a writable filesystem, or point the broker URL "
        "(sqlite:///absolute/path/broker.db) somewhere writable"
    )


def open_broker_database(path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating if needed) and check the broker database; raise DataDirError if unusable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # SQLite must create broker.db-wal and -shm beside the file.
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "directory is not writable")
        connection = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise database_error(path, exc) from None
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode!r})")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.OperationalError(
                f"written by a newer tq (schema {version}, this tq knows {SCHEMA_VERSION})"
            )
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check failed: {check}")
        # Writing the schema (and its version) also proves the file is writable now.
        connection.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
    except sqlite3.Error as exc:
        connection.close()
        if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise  # another process held the lock past busy_timeout: worth retrying
        raise database_error(path, exc) from None
    return connection


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
        self._db()

    def _db(self) -> sqlite3.Connection:
        # A SQLite handle must not cross fork(): a child opens its own.
        if self._connection is None or self._connection_pid != os.getpid():
            self._connection = open_broker_database(self.path, busy_timeout_s=self.busy_timeout_s)
            self._connection_pid = os.getpid()
            self._synchronous = ""
        return self._connection

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE, committed FULL if durable else NORMAL."""
        with self._lock:
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
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            del self._deferred_acks[:acks]

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Write deferred acks, then close this process's connection (a later call reopens it)."""
        with self._lock:
            if self._connection is not None and self._connection_pid == os.getpid():
                try:
                    self.flush_acks()
                finally:
                    self._connection.close()
            self._connection = None
            self._deferred_acks.clear()

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
            tags = [uuid4().hex for _ in rows]
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
