"""A task message the worker holds: the parsed request, its kombu message and its timing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidTaskError
from ..protocol import TaskRequest, parse_task_message, saferepr
from ..signing import SigningPolicy, refusal_reason, signing_policy

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
        self._settle("reject", lambda: self.message.reject(requeue=requeue))

    def give_back(self) -> None:
        """Requeue the message unrun, first in line where the transport can put it there.

        A stop gives back what it holds unrun. A reject requeues at the back of a Redis queue
        (kombu's choice, so that a rejected message does not come straight back), which would
        move a stopping worker's prefetched messages behind everything sent since; tq's Redis
        transport puts them back at the head, as kombu's restore on close and RabbitMQ do.
        """
        qos = getattr(getattr(self.message, "channel", None), "qos", None)
        give_back = getattr(qos, "give_back", None)
        if give_back is None:
            self.reject(requeue=True)
        else:
            self._settle("requeue", lambda: give_back(self.message.delivery_tag))

    def _settle(self, what: str, settle: Callable[[], Any]) -> None:
        """Settle the message once (ack has its own copy: it runs for every task)."""
        if self.acknowledged:
            return
        self.acknowledged = True
        try:
            settle()
        except Exception as exc:  # unacked in the broker still: it comes back
            logger.warning("could not %s %s[%s]: %r", what, self.request.name, self.request.id, exc)

@dataclass(frozen=True)
class ReceiveRules:
    """What every message is checked against, read from the settings once per worker."""

    max_bytes: int
    signing: SigningPolicy


def receive_rules(app: App) -> ReceiveRules:
    """Read the rules; a bad setting (a short signing key) raises before the worker consumes."""
    return ReceiveRules(int(app.conf.worker_max_message_bytes or 0), signing_policy(app.conf))


def _refuse(message: Any, level: int, text: str, *args: Any) -> None:
    """Log one line about a message that will not run, then drop it (or dead-letter it)."""
    logger.log(level, text, *args)
    message.reject(requeue=False)


def _label(headers: Any) -> str:
    """name[id] of a message as its headers claim them, safe to log (quoted, bounded)."""
    if not isinstance(headers, dict):
        return "a message without headers"
    return f"{saferepr(headers.get('task'), 120)}[{saferepr(headers.get('id'), 120)}]"


def receive(
    app: App,
    message: Any,
    rules: ReceiveRules,
    time_limit: float | None,
    soft_time_limit: float | None,
) -> Held | None:
    """Parse a task message into a Held request; refuse what must not run, with one log line."""
    conf = app.conf
    limit = rules.max_bytes
    size = len(message.body or b"")
    if limit and size > limit:
        _refuse(
            message,
            logging.ERROR,
            "Rejected task %s: the message is %d bytes, over worker_max_message_bytes (%d)",
            _label(message.headers),
            size,
            limit,
        )
        return None
    reason = refusal_reason(
        rules.signing,
        headers=message.headers,
        body=message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
    )
    if reason is not None:
        _refuse(message, logging.WARNING, "Refused task %s: %s", _label(message.headers), reason)
        return None
    try:
        request = parse_task_message(
            message.headers, message.decode(), message.properties, message.delivery_info
        )
    except InvalidTaskError as exc:
        _refuse(message, logging.ERROR, "Rejected an invalid task message: %s", exc)
        return None
    except Exception as exc:  # ContentDisallowed, DecodeError: anything a peer could send
        _refuse(
            message,
            logging.ERROR,
            "Rejected task %s: the message cannot be decoded (content type %r): %s",
            _label(message.headers),
            message.content_type,
            saferepr(str(exc), 300),
        )
        return None
    task = app.tasks.get(request.name)
    if task is None:
        _refuse(
            message,
            logging.ERROR,
            "Received unregistered task of type %r (id %r): rejected. The task is not in "
            "this worker's app; import its module via include=[...]",
            request.name,
            request.id,
        )
        return None
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
