"""Embedded result store: one SQLite table of result meta, shared by the machine's processes.

A chord is a row in `chords` (its size, written by the client, and a counter) and one row
per finished header task in `chord_parts`. A header task's worker inserts its part and
bumps the counter in one write transaction; the insert is keyed by (group, task, index), so
a redelivered task counts once, and the transaction that brings the counter to the size
marks the chord done and is the only one that sends the body.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import states
from ..errors import DataDirError
from .base import (
    POLL_MAX_S,
    POLL_START_S,
    TASK_KEY_PREFIX,
    ChordPart,
    ChordReady,
    KeyValueBackend,
    join_chord_parts,
    part_result,
    pending_meta,
    raise_timeout,
)

if TYPE_CHECKING:
    from ..app import App
    from ..protocol import TaskRequest

#: Seconds a writer waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 30_000
#: Pause between attempts to open a database another process holds locked.
OPEN_RETRY_S = 0.05
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

_CHORD_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS chords (
        group_id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        counter INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        expires_at REAL
    )""",
    """CREATE TABLE IF NOT EXISTS chord_parts (
        group_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        group_index INTEGER NOT NULL,
        name TEXT,
        state TEXT NOT NULL,
        result BLOB NOT NULL,
        PRIMARY KEY (group_id, task_id, group_index)
    )""",
)

#: The index a part without group_index sorts under (after every indexed part).
UNINDEXED_PART = 1 << 62

#: Placeholders per `IN (...)` query when reading many results at once.
MANY_BATCH = 500

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
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            # Switching to WAL needs a moment alone with the file: only ask when it is not WAL yet.
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
            return connection
        except sqlite3.OperationalError as exc:
            # Several pool processes open the file at once: "locked" passes, so wait and retry.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise DataDirError(f"cannot use the {what} database {path}: {exc}") from None
            time.sleep(OPEN_RETRY_S)
        except sqlite3.DatabaseError as exc:
            raise DataDirError(
                f"cannot use the {what} database {path}: {exc}; move the file away "
                "(or set TQ_DATA_DIR elsewhere) and tq will create a new one"
            ) from None


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
            for statement in _CHORD_SCHEMA:
                local.connection.execute(statement)
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
            self._execute("DELETE FROM chords WHERE expires_at < ?", (time.time(),))
            self._execute(
                "DELETE FROM chord_parts WHERE group_id NOT IN (SELECT group_id FROM chords)"
            )

    def delete(self, key: str) -> None:
        self._execute("DELETE FROM results WHERE key = ?", (key,))

    def get_many_meta(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        now = time.time()
        for start in range(0, len(task_ids), MANY_BATCH):
            keys = [TASK_KEY_PREFIX + i for i in task_ids[start : start + MANY_BATCH]]
            rows = self._execute(
                f"SELECT key, meta, expires_at FROM results WHERE key IN ({','.join('?' * len(keys))})",
                tuple(keys),
            ).fetchall()
            for key, meta, expires_at in rows:
                if expires_at is None or expires_at >= now:
                    found[key[len(TASK_KEY_PREFIX) :]] = self.decode(meta)
        return {i: found.get(i) or pending_meta(i) for i in task_ids}

    def wait_for_many(
        self,
        task_ids: list[str],
        timeout: float | None = None,
        interval: float = 0.5,
        stop_on_failure: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """Poll all pending results with one query per round, backing off like wait_for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_START_S
        cap = max(POLL_START_S, min(interval, POLL_MAX_S))
        metas: dict[str, dict[str, Any]] = {}
        pending = list(task_ids)
        while True:
            metas.update(self.get_many_meta(pending))
            pending = [i for i in pending if metas[i]["status"] not in states.READY_STATES]
            failed = any(m["status"] in states.PROPAGATE_STATES for m in metas.values())
            if not pending or (stop_on_failure and failed):
                return metas
            if deadline is not None and time.monotonic() >= deadline:
                raise_timeout()
            time.sleep(
                delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            )
            delay = min(cap, delay * 2)

    # -- chords ------------------------------------------------------------------------------

    def _expires_at(self) -> float | None:
        return time.time() + self.expires_s if self.expires_s else None

    def set_chord_size(self, group_id: str, size: int) -> None:
        def reset(db: sqlite3.Connection) -> None:
            # Sending a frozen chord again reuses its group id: it is a new run.
            db.execute("DELETE FROM chord_parts WHERE group_id = ?", (group_id,))
            db.execute(
                "INSERT OR REPLACE INTO chords (group_id, size, counter, done, expires_at) "
                "VALUES (?, ?, 0, 0, ?)",
                (group_id, size, self._expires_at()),
            )

        self._in_transaction(reset)

    def _in_transaction(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work` in one write transaction (BEGIN IMMEDIATE: writers queue, never deadlock)."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                outcome = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise DataDirError(f"result store {self.path}: {exc}") from None
        return outcome

    def on_chord_part_return(
        self, request: TaskRequest, state: str, result: Any
    ) -> ChordReady | None:
        group_id = request.group_id
        if not group_id:
            return None
        index = UNINDEXED_PART if request.group_index is None else request.group_index
        encoded = self.encode({"result": part_result(result, state)})
        payload = encoded.encode() if isinstance(encoded, str) else encoded
        parts = self._in_transaction(
            lambda db: self._record_part(db, group_id, request, index, state, payload)
        )
        if parts is None:
            return None
        return join_chord_parts(
            ChordPart(task_id, part_state, self.decode(value)["result"], name)
            for task_id, part_state, value, name in parts
        )

    def _record_part(
        self,
        db: sqlite3.Connection,
        group_id: str,
        request: TaskRequest,
        index: int,
        state: str,
        payload: bytes,
    ) -> list[tuple[Any, ...]] | None:
        row = db.execute("SELECT size, done FROM chords WHERE group_id = ?", (group_id,)).fetchone()
        if row is None or row[1]:
            return None  # not a chord we count, or one finished already (a late duplicate)
        inserted = db.execute(
            "INSERT OR IGNORE INTO chord_parts (group_id, task_id, group_index, name, state, result)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (group_id, request.id, index, request.name, state, payload),
        ).rowcount
        counter = db.execute(
            "UPDATE chords SET counter = counter + ?, expires_at = ? WHERE group_id = ? "
            "RETURNING counter",
            (inserted, self._expires_at(), group_id),
        ).fetchone()[0]
        if counter < row[0]:
            return None
        db.execute("UPDATE chords SET done = 1 WHERE group_id = ?", (group_id,))
        parts = db.execute(
            "SELECT task_id, state, result, name FROM chord_parts WHERE group_id = ? "
            "ORDER BY group_index, rowid",
            (group_id,),
        ).fetchall()
        db.execute("DELETE FROM chord_parts WHERE group_id = ?", (group_id,))
        return parts

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local = threading.local()
