"""multi's own words before the grammar sees a command line: stop signals (`-KILL`) and flags."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Sequence

_SIGNAL_WORD = re.compile(r"^-(\d+|(?:SIG)?[A-Z][A-Z0-9]+)$")


def pop_signal(argv: Sequence[str]) -> tuple[list[str], int | None]:
    """Take `-KILL`, `-SIGINT`, `-9` ... out of a stop command line: (the rest, last signal)."""
    rest: list[str] = []
    signum = None
    for position, word in enumerate(argv):
        if word == "--":
            rest.extend(argv[position:])
            break
        number = _signal_number(word)
        if number is None:
            rest.append(word)
        else:
            signum = number
    return rest, signum


def pop_flags(argv: Sequence[str], flags: Iterable[str]) -> tuple[list[str], set[str]]:
    """Take multi's own flags (`--verbose`, `-q` ...) out of a command line, up to `--`."""
    wanted = set(flags)
    rest: list[str] = []
    found: set[str] = set()
    for position, word in enumerate(argv):
        if word == "--":
            rest.extend(argv[position:])
            break
        if word in wanted:
            found.add(word)
        else:
            rest.append(word)
    return rest, found


def _signal_number(word: str) -> int | None:
    match = _SIGNAL_WORD.match(word)
    if match is None:
        return None
    text = match[1]
    if text.isdigit():
        number = int(text)
        return number if number in signal.valid_signals() else None
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        return None
