"""Checkpoint the embedded broker's write-ahead log from a thread, off the hub loop's path.

SQLite copies the WAL back into the database file (a checkpoint) inside the commit that takes
the WAL past 1,000 pages, with an fsync of each file at synchronous=NORMAL. In a worker draining
a backlog that commit is one of the hub loop's claim transactions: measured on a 2-core VM, the
checkpoints made a 7-message claim take 414 us instead of 242, 90 us of it CPU and the rest
waiting for the disk, while tasks waited to be handed out. A worker therefore turns its own
connection's automatic checkpoints off and runs them here instead, on a connection of this
thread's own (SQLite lets go of the GIL while it copies and syncs). Other processes (clients
publishing, `tq` commands) keep SQLite's automatic checkpoints, so the WAL is still bounded if
this thread is gone.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("tq.transports.sqlite")

#: Seconds between checks; a check with new commits runs a PASSIVE checkpoint.
CHECKPOINT_INTERVAL_S = 0.1

# A fork while this thread is inside SQLite would leave SQLite's own mutexes locked in the
# child (the embedded result store runs SQLite in pool processes): fork waits for the check.
_checkpoint_lock = threading.Lock()
os.register_at_fork(
    before=_checkpoint_lock.acquire,
    after_in_parent=_checkpoint_lock.release,
    after_in_child=_checkpoint_lock.release,
)


class Checkpointer:
    """A daemon thread that checkpoints path's WAL whenever commits() moved since its last look;
    if SQLite fails it, it calls on_failure (to give checkpoints back to SQLite) and ends.

    commits is read without a lock: a stale value delays a checkpoint by one interval at most.
    """

    def __init__(
        self,
        path: Path,
        commits: Callable[[], int],
        on_failure: Callable[[], None],
        *,
        busy_timeout_s: float,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.path = path
        self._commits = commits
        self._on_failure = on_failure
        self._busy_timeout_s = busy_timeout_s
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._owner_pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="tq-wal-checkpoint", daemon=True)
        self._thread.start()

    def owned_here(self) -> bool:
        """Whether this process started the thread (a forked child has no such thread)."""
        return os.getpid() == self._owner_pid and not self._stop.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread (after the checkpoint it may be running)."""
        self._stop.set()
        if os.getpid() == self._owner_pid and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        db = None
        try:
            with _checkpoint_lock:  # opening (and closing) takes SQLite's mutexes too
                db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            seen = self._commits()
            while not self._stop.wait(self._interval_s):
                commits = self._commits()
                if commits == seen:
                    continue
                seen = commits
                with _checkpoint_lock:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoints of %s go back to SQLite's commits: %s", self.path, exc)
            self._on_failure()
        finally:
            if db is not None:
                with _checkpoint_lock:
                    db.close()
