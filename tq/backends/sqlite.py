"""Embedded result store: one SQLite table of result meta, shared by the machine's processes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataDirError
from .base import KeyValueBackend

if TYPE_CHECKING:
    from ..app import App

#: Seconds a writer waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 30_000
#: Expired rows are swept once every this many writes.
SWEEP_EVERY_WRITES = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    meta BLOB NOT NULL,
    expires_at REAL
)
"""

# A stored SUCCESS is final: a redelivered task must not turn it back to STARTED.
_UPSERT = """
INSERT INTO results (key, status, meta, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT(key) DO UPDATE SET status = excluded.status, meta = excluded.meta,
    expires_at = excluded.expires_at
WHERE results.status != 'SUCCESS'
"""


def sqlite_path_from_url(url: str) -> Path:
    """Return the file path of a sqlite:///path URL."""
    path = url.split("://", 1)[1]
    if not path or path == "/":
        raise DataDirError(
            f"sqlite URL {url!r} names no file: use sqlite:///absolute/path/results.db"
        )
    return Path(path).expanduser()


def open_database(path: Path, what: str) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite database in WAL mode, with one-line errors."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DataDirError(
            f"cannot create the {what} directory {path.parent}: {exc.strerror}; "
            "set TQ_DATA_DIR to a writable directory"
        ) from None
    try:
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise DataDirError(
            f"cannot use the {what} database {path}: {exc}; move the file away "
            "(or set TQ_DATA_DIR elsewhere) and tq will create a new one"
        ) from None
    return connection


class SQLiteBackend(KeyValueBackend):
    """Results in a SQLite file; get() polls with a short backoff."""

    def __init__(self, app: App, url: str) -> None:
        super().__init__(app, url)
        self.path = sqlite_path_from_url(url)
        self._local = threading.local()
        self._writes = 0

    @property
    def db(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection = open_database(self.path, "result store")
            local.pid = os.getpid()
        return local.connection

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise DataDirError(f"result store {self.path}: {exc}") from None

    def get(self, key: str) -> bytes | None:
        row = self._execute("SELECT meta, expires_at FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        meta, expires_at = row
        if expires_at is not None and expires_at < time.time():
            return None
        return meta

    def set(self, key: str, value: bytes | str, state: str) -> None:
        expires_at = time.time() + self.expires_s if self.expires_s else None
        payload = value.encode() if isinstance(value, str) else value
        self._execute(_UPSERT, (key, state, payload, expires_at))
        self._writes += 1
        if self._writes % SWEEP_EVERY_WRITES == 0:
            self._execute("DELETE FROM results WHERE expires_at < ?", (time.time(),))

    def delete(self, key: str) -> None:
        self._execute("DELETE FROM results WHERE key = ?", (key,))

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local = threading.local()
