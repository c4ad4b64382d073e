"""Broker transports tq adds to kombu: the embedded SQLite broker."""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

#: URL scheme -> kombu transport class path, for every transport tq provides.
TQ_TRANSPORTS = {
    "sqlite": "tq.transports.sqlite:Transport",
}


def register_transports() -> None:
    """Make kombu.Connection accept tq's URL schemes (sqlite://); safe to call repeatedly."""
    TRANSPORT_ALIASES.update(TQ_TRANSPORTS)
