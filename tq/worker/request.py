"""A task message the worker holds: the parsed request, its kombu message and its timing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidTaskError
from ..protocol import TaskRequest, parse_task_message

if TYPE_CHECKING:
    from ..app import App

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


def receive(
    app: App, message: Any, time_limit: float | None, soft_time_limit: float | None
) -> Held | None:
    """Parse a task message into a Held request; reject what cannot run, with one log line."""
    try:
        request = parse_task_message(
            message.headers, message.decode(), message.properties, message.delivery_info
        )
    except InvalidTaskError as exc:
        logger.error("Rejected an invalid task message: %s", exc)
        message.reject(requeue=False)
        return None
    except Exception as exc:  # ContentDisallowed, DecodeError: anything a peer could send
        logger.error(
            "Rejected a message that cannot be decoded (content type %r): %s",
            message.content_type,
            exc,
        )
        message.reject(requeue=False)
        return None
    task = app.tasks.get(request.name)
    if task is None:
        logger.error(
            "Received unregistered task of type %r: rejected. The task is not in this "
            "worker's app; import its module via include=[...]",
            request.name,
        )
        message.reject(requeue=False)
        return None
    conf = app.conf
    return Held(
        request=request,
        message=message,
        acks_late=bool(task.option("acks_late", "task_acks_late")),
        reject_on_worker_lost=bool(
            task.option("reject_on_worker_lost", "task_reject_on_worker_lost")
        ),
        acks_on_failure=bool(
            task.option("acks_on_failure_or_timeout", "task_acks_on_failure_or_timeout")
        ),
        time_limit=request.time_limit or task.time_limit or time_limit or conf.task_time_limit,
        soft_time_limit=(
            request.soft_time_limit
            or task.soft_time_limit
            or soft_time_limit
            or conf.task_soft_time_limit
        ),
    )


def received_event_fields(request: TaskRequest) -> dict[str, Any]:
    """The fields of a task-received event."""
    return {
        "uuid": request.id,
        "name": request.name,
        "args": request.argsrepr,
        "kwargs": request.kwargsrepr,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "retries": request.retries,
        "eta": request.eta.isoformat() if request.eta else None,
        "expires": request.expires.isoformat() if request.expires else None,
    }
