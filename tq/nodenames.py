"""Node names and the %-placeholders of -n, --pidfile and --logfile."""

from __future__ import annotations

import socket

#: Node name used when -n is not given, as Celery's.
DEFAULT_NODENAME = "celery@%h"


def host_format(template: str, hostname: str | None = None) -> str:
    """Expand %h (full host), %n (host without domain) and %d (domain) in a -n value."""
    full = hostname or socket.gethostname()
    short, _, domain = full.partition(".")
    return _expand(template, {"h": full, "n": short, "d": domain})


def node_format(template: str, nodename: str, index: int | None = None) -> str:
    """Expand %n %h %d %p %i %I in a pid or log file path for one node (and pool index)."""
    name, _, host = nodename.partition("@")
    domain = host.partition(".")[2]
    values = {"n": name, "h": host, "d": domain, "p": nodename, "N": name}
    if index is not None:
        values["i"] = str(index)
        values["I"] = f"-{index}" if index else ""
    return _expand(template, values)


def _expand(template: str, values: dict[str, str]) -> str:
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            key = template[i + 1]
            if key == "%":
                out.append("%")
                i += 2
                continue
            if key in values:
                out.append(values[key])
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)
