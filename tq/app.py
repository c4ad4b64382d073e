"""App: configuration, the task registry, routing and sending tasks."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from kombu import Connection, Queue

from . import result as result_module
from . import topology
from .backends import backend_for_url
from .broker import Publisher, default_broker_url, make_connection
from .canvas import Signature, as_message_signatures, maybe_signature
from .canvas_chunks import register_builtins
from .config import Settings
from .errors import ConfigError, NotRegistered, QueueNotFound
from .protocol import build_task_message, new_task_id, saferepr, utcnow
from .routing import build_routers, route_task
from .task import Task, current_request

if TYPE_CHECKING:
    from .backends.base import Backend
    from .control import Control


class App:
    """A tq application: tasks, configuration and the connections to broker and backend."""

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        include: list[str] | tuple[str, ...] | None = None,
        config_source: object | str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main or "__main__"
        self.conf = Settings()
        if config_source is not None:
            self.conf.load_object(config_source)
        self.conf.update(settings)
        if broker is not None:
            self.conf.broker_url = broker
        if backend is not None:
            self.conf.result_backend = backend
        self.include = list(include or [])
        self.tasks: dict[str, Task] = {}
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._routers: list[Callable[..., Any]] | None = None
        self._routes_source: Any = None
        self._oid: tuple[int, str] | None = None
        self._control: Control | None = None
        # task-sent dispatchers, one per thread: each rides on its thread's publishing connection.
        self._sent_dispatchers = threading.local()
        self._created_queues: dict[tuple[str, Any], Queue] = {}
        register_builtins(self)

    def __repr__(self) -> str:
        return f"<App {self.main}:{id(self):#x}>"

    # -- configuration -----------------------------------------------------------------------

    def config_from_object(self, source: object | str) -> None:
        """Read settings from a module, a dotted module path or an object."""
        self.conf.load_object(source)
        self._reset_clients()

    def _reset_clients(self) -> None:
        # Everything built from settings or riding on the publisher's connection goes too.
        self._backend = None
        self._publisher = None
        self._routers = None
        self._control = None
        self._sent_dispatchers = threading.local()

    @property
    def broker_url(self) -> str:
        """The broker URL in use: configured, from TQ_BROKER_URL, or the embedded default."""
        return default_broker_url(self.conf)

    @property
    def result_backend_url(self) -> str | None:
        """The result backend URL; with no broker and no backend set, the embedded store."""
        url = self.conf.result_backend
        if url:
            return str(url)
        if not self.conf.broker_url:
            return f"sqlite://{self.conf.data_dir() / 'results.db'}"
        return None

    def broker_connection(self, url: str | None = None) -> Connection:
        """Return a new kombu connection to the broker."""
        return make_connection(self.conf, url)

    connection = broker_connection

    @property
    def timezone(self) -> tzinfo:
        """The timezone naive datetimes are read in (UTC unless `timezone` is set)."""
        name = self.conf.timezone
        if not name:
            return UTC
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"timezone {name!r} is not a known zone name (e.g. 'Europe/Paris')"
            ) from None

    @property
    def oid(self) -> str:
        """This process's client id: the rpc reply queue name and every message's reply_to."""
        pid = os.getpid()
        if self._oid is None or self._oid[0] != pid:
            self._oid = (pid, str(uuid4()))
        return self._oid[1]

    @property
    def backend(self) -> Backend:
        """The result backend (created on first use)."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = backend_for_url(self, self.result_backend_url)
        return self._backend

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(self.conf)
        return self._publisher

    def close(self) -> None:
        """Release the calling thread's broker connection and the result backend's
        connections, as Celery's app.close(); the app connects again when used next.
        `with App(...) as app:` closes it when the block ends."""
        if self._publisher is not None:
            self._publisher.close()
        with self._backend_lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def control(self) -> Control:
        """Remote control of the workers: revoke, ping, inspect."""
        if self._control is None:
            from .control import Control

            self._control = Control(self)
        return self._control

    # -- tasks -------------------------------------------------------------------------------

    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: `@app.task` or `@app.task(bind=True, ...)`."""

        def register(fun: Callable[..., Any]) -> Task:
            name = options.pop("name", None) or self.gen_task_name(fun)
            task = Task(self, fun, name, **options)
            self.tasks[name] = task
            return task

        if len(args) == 1 and callable(args[0]) and not options:
            return register(args[0])
        if args:
            raise TypeError("use @app.task or @app.task(option=value, ...)")
        return register

    def gen_task_name(self, fun: Callable[..., Any]) -> str:
        """Return the default task name: module.function (app name for __main__)."""
        module = getattr(fun, "__module__", None) or self.main
        if module == "__main__":
            module = self.main
        return f"{module}.{fun.__name__}"

    def import_includes(self) -> None:
        """Import the modules named in `include`, registering their tasks."""
        for module in self.include:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(
                    f"cannot import task module {module!r} listed in include: {exc}"
                ) from None

    def signature(
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Signature:
        """Return a signature for a task by name, bound to this app."""
        return Signature(name, args, kwargs, options, app=self)

    def AsyncResult(
        self, task_id: str, *, task_name: str | None = None
    ) -> result_module.AsyncResult:  # noqa: N802
        """Return the result handle of a task id."""
        return result_module.AsyncResult(task_id, app=self, task_name=task_name)

    def task_by_name(self, name: str) -> Task:
        """Return a registered task, or raise NotRegistered."""
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(name) from None

    # -- routing and sending -----------------------------------------------------------------

    @property
    def routers(self) -> list[Callable[..., Any]]:
        source = self.conf.task_routes
        if self._routers is None or source is not self._routes_source:
            self._routers = build_routers(source)
            self._routes_source = source
        return self._routers

    def queue_by_name(self, name: str) -> Queue:
        """Return the declared queue `name` (task_queues), creating it if allowed."""
        for queue in self.conf.task_queues or ():
            if queue.name == name:
                return queue
        if not self.conf.task_create_missing_queues:
            raise QueueNotFound(
                f"queue {name!r} is not in task_queues and task_create_missing_queues is off"
            )
        max_priority = self.conf.task_queue_max_priority
        key = (name, max_priority)
        queue = self._created_queues.get(key)
        if queue is None:
            # One Queue object per name: building it is most of a publish's routing cost.
            queue = self._created_queues[key] = topology.task_queue(name, max_priority=max_priority)
        return queue

    def default_queue(self) -> Queue:
        conf = self.conf
        return self.queue_by_name(conf.task_default_queue)

    def to_utc(self, moment: datetime) -> datetime:
        """Read a naive datetime in the app's timezone and return it in UTC."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.timezone)
        return moment.astimezone(UTC)

    def send_task(
        self,
        name: str,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | timedelta | None = None,
        task_id: str | None = None,
        queue: str | Queue | None = None,
        exchange: str | None = None,
        routing_key: str | None = None,
        priority: int | None = None,
        link: Any = None,
        link_error: Any = None,
        ignore_result: bool | None = None,
        headers: dict[str, Any] | None = None,
        retries: int = 0,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_id: str | None = None,
        group_index: int | None = None,
        callbacks: list[dict[str, Any]] | None = None,
        errbacks: list[dict[str, Any]] | None = None,
        chain: list[dict[str, Any]] | None = None,
        chord: dict[str, Any] | None = None,
        shadow: str | None = None,
        reply_to: str | None = None,
        retry: bool | None = None,
        retry_policy: dict[str, Any] | None = None,
        task: Task | None = None,
        **_compat: Any,
    ) -> result_module.AsyncResult:
        """Send a task by name and return its AsyncResult."""
        conf = self.conf
        task_id = task_id or new_task_id()
        args = list(args or ())
        kwargs = dict(kwargs or {})
        route = route_task(
            self.routers,
            name,
            args,
            kwargs,
            {
                "queue": queue,
                "exchange": exchange,
                "routing_key": routing_key,
                "priority": priority,
            },
            task=task,
        )
        target = route.get("queue") or conf.task_default_queue
        target_queue = target if isinstance(target, Queue) else self.queue_by_name(target)
        if route.get("priority") is None:
            route["priority"] = conf.task_default_priority
        eta, expires = self._eta_and_expiry(countdown, eta, expires)
        parent = current_request()
        if parent is not None and parent.id is not None and not parent.called_directly:
            parent_id = parent_id or parent.id
            root_id = root_id or parent.root_id
        if ignore_result is None:
            ignore_result = conf.task_ignore_result
        message = build_task_message(
            task_id=task_id,
            name=name,
            args=args,
            kwargs=kwargs,
            eta=eta,
            expires=expires,
            retries=retries,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            group_id=group_id,
            group_index=group_index,
            root_id=root_id,
            parent_id=parent_id,
            ignore_result=bool(ignore_result),
            shadow=shadow,
            callbacks=callbacks if callbacks is not None else as_message_signatures(link),
            errbacks=errbacks if errbacks is not None else as_message_signatures(link_error),
            chain=chain,
            chord=chord,
            reply_to=reply_to or self.oid,
            priority=route.get("priority"),
            extra_headers=headers,
        )
        backend = self.backend if not ignore_result else None
        self.publisher.publish(
            message,
            queue=target_queue,
            exchange=route.get("exchange"),
            routing_key=route.get("routing_key"),
            retry=conf.task_publish_retry if retry is None else retry,
            retry_policy=retry_policy,
            before_publish=backend.on_task_call if backend is not None else None,
            after_publish=(
                partial(self._send_sent_event, message, target_queue, route)
                if conf.task_send_sent_event
                else None
            ),
        )
        return result_module.AsyncResult(task_id, app=self, task_name=name)

    def send_many(self, calls: Iterable[Any], **options: Any) -> list[Any]:
        """Send many task calls together: as few broker round trips as the transport allows.

        Each call is a signature (``add.s(1, 2)``, a chain, a group) or a ``(name, args,
        kwargs)`` tuple; ``options`` (as for apply_async) are given to every call. Every call
        is checked and encoded before any is sent: a bad one raises its error, with a note
        naming it, and none is sent. Returns each call's result, in order.
        """
        results = []
        with self.publisher.batch():
            for index, call in enumerate(calls):
                try:
                    if isinstance(call, tuple):
                        call = self.signature(*call)
                    results.append(maybe_signature(call, app=self).apply_async(**options))
                except Exception as exc:
                    exc.add_note(
                        f"send_many: call {index} ({saferepr(call, 80)}) failed; "
                        "no call of this send_many was sent"
                    )
                    raise
        return results

    def _eta_and_expiry(
        self,
        countdown: float | None,
        eta: datetime | None,
        expires: float | datetime | timedelta | None,
    ) -> tuple[datetime | None, datetime | None]:
        """Return eta and expires as UTC datetimes (expires may be seconds or a timedelta)."""
        if countdown is None and eta is None and expires is None:
            return None, None
        now = utcnow()
        if countdown is not None:
            eta = now + timedelta(seconds=countdown)
        elif eta is not None:
            eta = self.to_utc(eta)
        if isinstance(expires, (int, float)):
            expires = now + timedelta(seconds=expires)
        elif isinstance(expires, timedelta):
            expires = now + expires
        elif isinstance(expires, datetime):
            expires = self.to_utc(expires)
        return eta, expires

    def _send_sent_event(self, message: Any, queue: Queue, route: dict[str, Any]) -> None:
        """Publish task-sent (task_send_sent_event), from this client as gen<pid>@host."""
        from .events import EventDispatcher, task_sent_fields

        connection = self.publisher.connection
        dispatcher = getattr(self._sent_dispatchers, "dispatcher", None)
        if dispatcher is None or dispatcher.connection is not connection:
            dispatcher = self._sent_dispatchers.dispatcher = EventDispatcher(
                connection,
                hostname=message.headers["origin"],
                exchange_name=self.conf.event_exchange,
                enabled_groups=("task",),
            )
        headers = message.headers
        dispatcher.send(
            "task-sent",
            **task_sent_fields(
                task_id=headers["id"],
                name=headers["task"],
                argsrepr=headers["argsrepr"],
                kwargsrepr=headers["kwargsrepr"],
                retries=headers["retries"],
                eta=headers["eta"],
                expires=headers["expires"],
                root_id=headers["root_id"],
                parent_id=headers["parent_id"],
                queue=queue.name,
                exchange=route.get("exchange") or "",
                routing_key=route.get("routing_key") or queue.name,
            ),
        )


#: Celery's name for the same class, so `from tq import Celery` reads like Celery's guide.
Celery = App
