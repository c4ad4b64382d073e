"""Signals into actions: TERM/INT warm stop, QUIT or a second signal cold, HUP reopens logs."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .consumer import Worker


class ShutdownSignals:
    """Catches TERM, INT and QUIT and turns them into warm or cold stops inside the loop."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pending: list[int] = []
        self.reader = -1
        self._writer = -1

    def install(self) -> None:
        """Handle the signals; their arrival wakes the loop through a pipe (set_wakeup_fd)."""
        self.reader, self._writer = os.pipe()
        os.set_blocking(self.reader, False)
        os.set_blocking(self._writer, False)
        signal.set_wakeup_fd(self._writer, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        signal.set_wakeup_fd(-1)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def on_wakeup(self) -> None:
        """Drain the wake-up pipe and act on the signals that arrived."""
        try:
            while os.read(self.reader, 512):
                pass
        except (BlockingIOError, OSError):
            pass
        from .consumer import RUNNING

        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGHUP:
                self.worker.reopen_logs()
                continue
            name = signal.Signals(signum).name
            cold = signum == signal.SIGQUIT or self.worker.state != RUNNING
            self.worker.request_stop(cold=cold, reason=name)
