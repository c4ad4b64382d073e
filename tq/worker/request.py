"""A task message the worker holds: the parsed request, its kombu message and its timing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..protocol import TaskRequest

logger = logging.getLogger("tq.worker")


@dataclass(eq=False)
class Held:
    """A request the worker has received and not yet finished with."""

    request: TaskRequest
    message: Any
    acks_late: bool
    reject_on_worker_lost: bool
    acks_on_failure: bool
    time_limit: float | None = None
    soft_time_limit: float | None = None
    job_id: int | None = None
    child: Any = None
    started_at: float | None = None
    time_start_epoch: float | None = None
    soft_sent: bool = False
    timed_out: bool = False
    terminated_by: int | None = None
    acknowledged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def ack(self) -> None:
        """Ack the message once; a lost connection is logged, not raised."""
        if self.acknowledged:
            return
        self.acknowledged = True
        try:
            self.message.ack()
        except Exception as exc:  # the broker will redeliver an unacked message
            logger.warning("could not ack %s[%s]: %r", self.request.name, self.request.id, exc)

    def reject(self, requeue: bool) -> None:
        """Reject the message once (requeue it, or drop it)."""
        if self.acknowledged:
            return
        self.acknowledged = True
        try:
            self.message.reject(requeue=requeue)
        except Exception as exc:
            logger.warning("could not reject %s[%s]: %r", self.request.name, self.request.id, exc)
