"""Time limits of running tasks: past its soft limit a task's pool process gets SIGUSR1
(SoftTimeLimitExceeded inside the task), past its hard limit SIGKILL (the pool replaces it)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable
from typing import Any

from .request import Held

logger = logging.getLogger("tq.worker")


def enforce_time_limits(active: Iterable[Held], pool: Any, now: float) -> None:
    """Signal the pool process of every running task past one of its limits, once per limit."""
    for held in list(active):
        if held.started_at is None or held.child is None or held.job_id is None:
            continue
        elapsed = now - held.started_at
        # A job's time runs from its hand-off; its pool process may still be reading it, and
        # takes no signal until it runs it: then the next check tries again.
        if held.soft_time_limit and not held.soft_sent and elapsed >= held.soft_time_limit:
            held.soft_sent = pool.signal_job(held.child, held.job_id, signal.SIGUSR1)
            if held.soft_sent:
                logger.warning(
                    "Soft time limit (%ss) exceeded for %s[%s]",
                    held.soft_time_limit,
                    held.request.name,
                    held.request.id,
                )
        if held.time_limit and not held.timed_out and elapsed >= held.time_limit:
            held.timed_out = pool.signal_job(held.child, held.job_id, signal.SIGKILL)
