"""The start-up banner, in the shape Celery users know."""

from __future__ import annotations

import os
import platform
from datetime import datetime
from typing import TYPE_CHECKING

from ..config import mask_url
from ..signing import signing_policy
from ..topology import describe_queue

if TYPE_CHECKING:
    from .consumer import Worker


def render_banner(worker: Worker, *, version: str, show_tasks: bool) -> str:
    """Return the banner text: node, version, config, queues and (optionally) tasks."""
    app = worker.app
    options = worker.options
    results = app.result_backend_url
    events = "ON" if options.send_events else "OFF (enable -E to monitor tasks in this worker)"
    config = [
        f".> app:         {app.main}:{id(app):#x}",
        f".> transport:   {mask_url(app.broker_url)}",
        f".> results:     {mask_url(results) if results else 'disabled://'}",
        f".> concurrency: {_concurrency(options)} ({options.pool})",
        f".> task events: {events}",
    ]
    signing = signing_policy(app.conf)
    if signing.enabled:
        unsigned = "run" if signing.accept_unsigned else "refused"
        config.append(f".> signing:     HMAC-SHA256 (unsigned messages {unsigned})")
    art = [
        " -------------- ",
        "--- ***** ----- ",
        "-- ******* ---- ",
        "- *** --- * --- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- ** ---------- ",
        "- *** --- * --- ",
        "-- ******* ---- ",
        "--- ***** ----- ",
        " -------------- ",
    ]
    now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    right = [
        f"{worker.hostname} tq v{version}",
        "",
        f"{platform_text()} {now}",
        "",
        "[config]",
        *config,
    ]
    lines = [f"{art[i]}{right[i] if i < len(right) else ''}".rstrip() for i in range(len(art))]
    lines[-1] = " -------------- [queues]"
    lines[-2] = lines[-2].rstrip()
    for queue in worker.queues:
        lines.append(f"                .> {describe_queue(queue)}")
    if show_tasks:
        lines += ["", "[tasks]"]
        lines += [f"  . {name}" for name in sorted(app.tasks) if not name.startswith("celery.")]
    return "\n".join(lines) + "\n"


def _concurrency(options: object) -> str:
    scale = getattr(options, "autoscale", None)
    if scale:
        return f"{{min={scale[1]}, max={scale[0]}}}"
    return str(getattr(options, "concurrency", "?"))


def platform_text() -> str:
    """The system as platform.platform() names it on Linux (`Linux-6.1.0-x86_64-with-glibc2.36`).

    platform.platform() also asks for the processor, which on Linux runs `uname -p` in a
    subprocess: a fork of the whole worker on the way to its first task, for a field it
    leaves out when it is the machine name or unknown.
    """
    uname = os.uname()
    parts = [uname.sysname, uname.release, uname.machine]
    library, version = platform.libc_ver()
    if library:
        parts += ["with", f"{library}{version}"]
    return "-".join(parts)
