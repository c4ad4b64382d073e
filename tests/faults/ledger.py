"""The fault suite's ledger (a local SQLite file, never the broker under test) and its table row."""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

#: The environment variable that tells the fault app's tasks where the ledger is.
LEDGER_ENV = "TQ_FAULT_LEDGER"
#: How long a writer waits for another process's lock on the ledger.
BUSY_TIMEOUT_S = 30.0
#: How often wait_until looks at the ledger again.
POLL_S = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    node TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Run:
    """One line of the ledger: a task execution started ('start') or ended ('end')."""

    key: str
    event: str
    task_id: str
    attempt: int
    node: str
    pid: int
    at: float


class Ledger:
    """Append-only record of executions, safe to write from many processes at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._db.execute(_SCHEMA)
            self._pid = os.getpid()
        return self._db

    def create(self) -> Ledger:
        """Create the file before any worker writes (WAL: readers never block the writers)."""
        self._connection().execute("PRAGMA journal_mode=WAL")
        return self

    def record(
        self, key: str, event: str, *, task_id: str = "", attempt: int = 0, node: str = ""
    ) -> None:
        """Append one line; committed before this returns, so a SIGKILL right after keeps it."""
        self._connection().execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, event, task_id, attempt, node, os.getpid(), time.time()),
        )

    def runs(self, event: str | None = None) -> list[Run]:
        """Every line (of one event kind), oldest first."""
        if not self.path.exists():
            return []
        query, args = "SELECT * FROM runs", ()
        if event is not None:
            query, args = query + " WHERE event = ?", (event,)
        rows = self._connection().execute(query + " ORDER BY rowid", args).fetchall()
        return [Run(*row) for row in rows]

    def starts(self) -> Counter[str]:
        """How many times each key started."""
        return Counter(run.key for run in self.runs("start"))

    def ends(self) -> Counter[str]:
        """How many times each key ran to its end."""
        return Counter(run.key for run in self.runs("end"))

    def duplicated(self) -> int:
        """Executions beyond one per (key, attempt): a retry is a new attempt, a redelivery is not."""
        starts = self.runs("start")
        return len(starts) - len({(run.key, run.attempt) for run in starts})

    def wait_until(self, condition: Callable[[Ledger], bool], timeout: float, what: str) -> None:
        """Poll until condition(self) holds; fail with `what` after timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return
            time.sleep(POLL_S)
        if not condition(self):
            raise AssertionError(f"{what} not seen in the ledger after {timeout}s")


@dataclass(frozen=True)
class FaultRow:
    """One row of the fault table: what a fault test sent and what the ledger and results saw."""

    fault: str
    broker: str
    sent: int
    executed: int
    succeeded: int
    failed: int
    duplicated: int
    lost: int
    resume_s: float | None = None

    def cells(self) -> list[str]:
        resume = "" if self.resume_s is None else f"{self.resume_s:.2f} s"
        return [
            self.fault,
            self.broker,
            *(str(n) for n in (self.sent, self.executed, self.succeeded, self.failed)),
            *(str(n) for n in (self.duplicated, self.lost)),
            resume,
        ]


COLUMNS = [
    "fault",
    "broker",
    "sent",
    "executed",
    "succeeded",
    "failed",
    "duplicated",
    "lost",
    "resume",
]


def format_table(rows: Iterable[FaultRow]) -> str:
    """Return the rows as a Markdown table (the form docs/guarantees.md keeps)."""
    lines = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def render(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])
