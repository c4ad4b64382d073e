"""Is a node's log still writable? Rotation failures and a full log filesystem, for `tq ps`."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .rotation import rotate_if_needed

#: Below this many bytes free (for the node's user) on its log's filesystem, writes fail.
LOG_FULL_BYTES = 4096


def free_bytes(path: Path) -> int | None:
    """Bytes a process of ours can still write on the filesystem holding `path` (None: unknown)."""
    target = path if path.exists() else path.parent
    try:
        info = os.statvfs(target)
    except OSError:
        return None
    if info.f_blocks == 0:  # not a disk (a device, /proc): its size says nothing
        return None
    # root may use the blocks reserved for it; anyone else only the available ones
    blocks = info.f_bfree if os.geteuid() == 0 else info.f_bavail
    return blocks * info.f_frsize


def check_log(path: Path, max_bytes: int, backups: int) -> tuple[bool, str | None]:
    """Rotate the log if it is due; return (rotated, why writing to it fails now or None)."""
    try:
        rotated = rotate_if_needed(path, max_bytes, backups)
    except OSError as exc:
        return False, f"cannot rotate {path}: {exc.strerror or exc}"
    free = free_bytes(path)
    if free is not None and free < LOG_FULL_BYTES:
        return rotated, (
            f"{os.strerror(errno.ENOSPC).lower()} for {path} ({free} bytes free): "
            "its lines are being lost; free some space there"
        )
    return rotated, None
