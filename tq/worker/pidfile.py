"""A pid file that refuses to start a second copy of a live node."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, TQError


class Pidfile:
    """Write our pid to a file; refuse if the file names another live process."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read_pid(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read pid file {self.path}: {exc.strerror}") from None
        return int(text) if text.isdigit() else None

    def acquire(self) -> None:
        """Write the pid file, replacing a stale one."""
        pid = self.read_pid()
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise TQError(
                f"pid file {self.path} names process {pid}, which is running: "
                "stop that node first, or use another --pidfile"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(f"{os.getpid()}\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            raise ConfigError(f"cannot write pid file {self.path}: {exc.strerror}") from None

    def release(self) -> None:
        """Remove the pid file if it is still ours."""
        if self.read_pid() == os.getpid():
            try:
                self.path.unlink()
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
