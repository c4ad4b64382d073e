"""Read-only remote-control commands: what a worker is doing, holding and configured with."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..config import mask_secrets, mask_url
from .control import handler, ok

if TYPE_CHECKING:
    from .consumer import Worker
    from .request import Held


def request_info(worker: Worker, held: Held, *, safe: bool = False) -> dict[str, Any]:
    """Describe a held request as Celery's inspect replies do."""
    request = held.request
    info = request.delivery_info or {}
    return {
        "id": request.id,
        "name": request.name,
        "args": request.argsrepr if safe else request.args,
        "kwargs": request.kwargsrepr if safe else request.kwargs,
        "type": request.name,
        "hostname": worker.hostname,
        "time_start": held.time_start_epoch,
        "acknowledged": held.acknowledged,
        "delivery_info": {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "priority": request.priority,
            "redelivered": bool(info.get("redelivered")),
        },
        "worker_pid": held.child.pid
        if held.child is not None and held.started_at and worker.options.pool == "prefork"
        else None,
    }


@handler
def ping(worker: Worker, **_kw: Any) -> dict[str, Any]:
    return ok("pong")


@handler
def clock(worker: Worker, **_kw: Any) -> dict[str, Any]:
    return {"clock": worker.clock.value}


@handler
def hello(worker: Worker, from_node: str, revoked: Any = None, **_kw: Any) -> dict[str, Any] | None:
    if from_node == worker.hostname:
        return None
    return {"revoked": list(worker.revoked_ids), "clock": worker.clock.forward()}


@handler
def active(worker: Worker, safe: bool = False, **_kw: Any) -> list[dict[str, Any]]:
    return [request_info(worker, held, safe=safe) for held in worker.active.values()]


@handler
def reserved(worker: Worker, safe: bool = False, **_kw: Any) -> list[dict[str, Any]]:
    waiting = list(worker.reserved) + list(worker.queued.values())
    return [request_info(worker, held, safe=safe) for held in waiting]


@handler
def scheduled(worker: Worker, safe: bool = False, **_kw: Any) -> list[dict[str, Any]]:
    return [
        {
            "eta": held.request.eta.isoformat() if held.request.eta else None,
            "priority": held.request.priority or 0,
            "request": request_info(worker, held, safe=safe),
        }
        for held in sorted(worker.eta_held, key=lambda one: one.request.eta or 0)
    ]


@handler
def revoked(worker: Worker, **_kw: Any) -> list[str]:
    return list(worker.revoked_ids)


@handler
def registered(
    worker: Worker, taskinfoitems: Any = None, builtins: bool = False, **_kw: Any
) -> list[str]:
    items = taskinfoitems or ("exchange", "routing_key", "rate_limit")
    lines = []
    for name in sorted(worker.app.tasks):
        if name.startswith("celery.") and not builtins:
            continue
        task = worker.app.tasks[name]
        extra = [
            f"{item}={getattr(task, item)}"
            for item in items
            if getattr(task, item, None) is not None
        ]
        lines.append(f"{name} [{' '.join(extra)}]" if extra else name)
    return lines


@handler
def query_task(worker: Worker, ids: Any = (), **_kw: Any) -> dict[str, Any]:
    wanted = {ids} if isinstance(ids, str) else {str(one) for one in ids}
    found: dict[str, Any] = {}
    for label, pool in (
        ("active", worker.active.values()),
        ("reserved", list(worker.reserved) + list(worker.queued.values())),
        ("scheduled", worker.eta_held),
    ):
        for held in pool:
            if held.request.id in wanted:
                found[held.request.id] = [label, request_info(worker, held)]
    return found


@handler
def active_queues(worker: Worker, **_kw: Any) -> list[dict[str, Any]]:
    return [queue.as_dict(recurse=True) for queue in worker.queues]


@handler
def stats(worker: Worker, **_kw: Any) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    connection = connection_info(worker.connection)
    return {
        "total": dict(worker.processed),
        "pid": os.getpid(),
        "clock": str(worker.clock.value),
        "uptime": int(time.time() - worker.started_at),
        "prefetch_count": worker.prefetch_limit,
        "pool": {
            "implementation": f"tq.worker.pool:{type(worker.pool).__name__}",
            "max-concurrency": worker.pool.size,
            "processes": worker.pool.pids(),
            "max-tasks-per-child": worker.options.max_tasks_per_child or "N/A",
            "put-guarded-by-semaphore": False,
            "timeouts": [worker.options.soft_time_limit or 0, worker.options.time_limit or 0],
            "writes": {"total": sum(worker.processed.values()), "strategy": "fair"},
        },
        "broker": connection,
        "rusage": {
            name: getattr(usage, f"ru_{name}")
            for name in (
                "utime",
                "stime",
                "maxrss",
                "ixrss",
                "idrss",
                "isrss",
                "minflt",
                "majflt",
                "nswap",
                "inblock",
                "oublock",
                "msgsnd",
                "msgrcv",
                "nsignals",
                "nvcsw",
                "nivcsw",
            )
        },
    }


def connection_info(connection: Any) -> dict[str, Any]:
    """The broker part of a `stats` reply."""
    if connection is None:
        return {}
    return {
        "hostname": connection.hostname,
        "userid": connection.userid,
        "virtual_host": connection.virtual_host,
        "port": connection.port,
        "insist": False,
        "ssl": bool(connection.ssl),
        # The scheme Celery shows ("amqp", "redis"), also when tq's own transport class serves it.
        "transport": connection.transport.driver_type
        if ":" in str(connection.transport_cls)
        else connection.transport_cls,
        "connect_timeout": connection.connect_timeout,
        "transport_options": connection.transport_options,
        "login_method": connection.login_method,
        "uri_prefix": connection.uri_prefix,
        "heartbeat": connection.heartbeat,
        "failover_strategy": "round-robin",
        "alternates": [],
    }


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


@handler
def conf(worker: Worker, with_defaults: bool = False, **_kw: Any) -> dict[str, Any]:
    settings = worker.app.conf
    keys = list(settings) if with_defaults else list(settings.changes())
    out = {}
    for key in sorted(keys):
        out[key] = _jsonable(mask_secrets(settings[key], key))
    return out


@handler
def report(worker: Worker, **_kw: Any) -> dict[str, Any]:
    lines = [
        f"software -> tq:{__version__} kombu:{_version('kombu')} py:{platform.python_version()}",
        f"            platform -> system:{platform.system()} arch:{platform.machine()} imp:{sys.implementation.name}",
        f"broker -> {mask_url(worker.app.broker_url)}",
        f"results -> {mask_url(worker.app.result_backend_url or 'disabled://')}",
    ]
    return ok("\n".join(lines))


@handler
def memsample(worker: Worker, **_kw: Any) -> str:
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}MB"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
