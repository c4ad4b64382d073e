"""Size-based log rotation: log -> log.1 -> ... -> log.N, then the node reopens (SIGHUP)."""

from __future__ import annotations

import os
from pathlib import Path


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate `path` when it has grown past max_bytes; return True if it did (OSError if it failed)."""
    try:
        if max_bytes <= 0 or path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    if backups <= 0:
        # No backups kept: start over. Truncating in place keeps the writers' O_APPEND fds valid.
        os.truncate(path, 0)
        return True
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    # A rename keeps every byte: the node goes on writing to the renamed file until it reopens.
    os.replace(path, path.with_name(f"{path.name}.1"))
    return True
