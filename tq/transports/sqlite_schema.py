"""The embedded broker's file: its tables, and opening and checking it."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataDirError

#: Seconds a process waits for another process's write lock before giving up.
DEFAULT_BUSY_TIMEOUT_S = 30.0
#: SQLite's own default: pages in the WAL past which a commit checkpoints it.
AUTOCHECKPOINT_PAGES = 1000
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
