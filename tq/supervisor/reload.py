"""--reload: watch the app's Python files and ask for a rolling restart when one changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("tq.supervisor")

#: Changes closer together than this are one reload (watchfiles' debounce, milliseconds).
DEBOUNCE_MS = 800


def watch_for_changes(directory: str, on_change: Callable[[str], object]) -> threading.Thread:
    """Start a daemon thread calling on_change(path) for each batch of changed .py files."""
    from watchfiles import PythonFilter, watch

    def run() -> None:
        try:
            for changes in watch(
                directory, watch_filter=PythonFilter(), debounce=DEBOUNCE_MS, raise_interrupt=False
            ):
                changed = sorted(
                    {
                        str(Path(path).relative_to(directory))
                        if path.startswith(directory)
                        else path
                        for _, path in changes
                    }
                )
                on_change(", ".join(changed))
        except Exception as exc:  # the watcher must never take the supervisor down
            logger.error("--reload stopped watching %s: %r", directory, exc)

    thread = threading.Thread(target=run, name="tq-reload", daemon=True)
    thread.start()
    return thread
