"""Every error tq raises, in one tree rooted at TQError."""

from __future__ import annotations


class TQError(Exception):
    """Base class of every tq error."""


class ConfigError(TQError):
    """A setting has a value tq cannot use."""


class AppNotFound(TQError):
    """The -A/--app argument did not name an App."""


class NotRegistered(TQError, KeyError):
    """A task name is not in the app's registry."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class InvalidTaskError(TQError):
    """A task message is malformed and cannot be executed."""


class QueueNotFound(TQError, KeyError):
    """A route names a queue that is not declared and may not be created."""


class BrokerUnavailable(TQError):
    """The broker could not be reached."""


class PublishError(TQError):
    """The broker gave a task message back (no queue to route it to) or refused it: it was not
    queued."""


class BackendError(TQError):
    """The result backend failed or is not configured."""


class DataDirError(TQError):
    """The embedded data directory or database cannot be used."""


_BuiltinTimeoutError = TimeoutError


class TimeoutError(TQError, _BuiltinTimeoutError):  # noqa: A001 - same name as Celery's
    """A result did not arrive in time."""


class SecurityError(TQError):
    """A message or result asked for something tq refuses to do."""


class TaskError(TQError):
    """Base of errors that describe how a task ended."""


class TaskRevokedError(TaskError):
    """The task was revoked (revoked, terminated or expired) and did not finish."""


class WorkerLostError(TaskError):
    """The pool process running the task exited before it finished."""


class TimeLimitExceeded(TaskError):
    """The task ran past its hard time limit and its process was killed."""


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task when it passes its soft time limit."""


class MaxRetriesExceededError(TaskError):
    """The task asked to retry but has used all its retries."""


class ChordError(TaskError):
    """A chord's header task failed, so its body cannot run."""


class Retry(TaskError):
    """Raised by Task.retry to tell the worker the task was re-sent."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | None = None,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        #: Set by Task.retry in eager mode: the result of the eager re-run.
        self.eager_result: object = None
        super().__init__(message, exc, when)

    def humanize(self) -> str:
        """Say when the retry will run."""
        if self.when is None:
            return "now"
        return f"in {self.when:.2f}s"

    def __str__(self) -> str:
        reason = f": {self.exc!r}" if self.exc is not None else ""
        return f"Retry {self.humanize()}{reason}"


class Reject(TaskError):
    """Raised by a task to reject its message, optionally requeueing it."""

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class Ignore(TaskError):
    """Raised by a task to make the worker store nothing for it."""


class WorkerShutdown(BaseException):
    """Stop the worker now (warm)."""


class WorkerTerminate(BaseException):
    """Stop the worker now (cold)."""
