"""A tiny tmpfs of a test's own, filled to the last byte, so that writes really fail with
ENOSPC (mounting needs root: the test is skipped otherwise)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BLOCK = b"\0" * 65536


@contextmanager
def mounted_tmpfs(path: Path, size: int) -> Iterator[Path]:
    """Mount a tmpfs of `size` bytes on `path` (made here) for the block; unmount after."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tqfault", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on {path}: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its filesystem refuses with ENOSPC; return it."""
    filler = directory / "filler"
    stat = os.statvfs(directory)
    with open(filler, "wb", buffering=0) as handle:
        for _ in range(stat.f_bavail * stat.f_frsize // len(BLOCK) + 2):
            try:
                handle.write(BLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        else:
            raise AssertionError(f"the filesystem of {directory} never filled up")
        for _ in range(len(BLOCK)):  # the last partial block, byte by byte
            try:
                handle.write(b"\0")
            except OSError:
                break
    return filler
