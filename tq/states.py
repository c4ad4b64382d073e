"""Task state names, the sets they form, and their precedence."""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

#: Earliest first; a state later in this list never replaces an earlier one
#: when events arrive out of order. Unknown (custom) states sit after FAILURE.
PRECEDENCE = [SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
_PRECEDENCE_INDEX = {state: index for index, state in enumerate(PRECEDENCE)}


def precedence(state: str | None) -> int:
    """Return the precedence index of a state (lower wins)."""
    return _PRECEDENCE_INDEX.get(state, _PRECEDENCE_INDEX[None])
