"""`tq call`, `tq result`, `tq purge`: send a task, read a result, empty queues."""

from __future__ import annotations

import json
from typing import Any

import click


def _json_arg(value: str | None, what: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg}): {value!r}", param_hint=what
        ) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(
            f"must be a JSON {kind.__name__}, e.g. {'[2, 2]' if kind is list else '{}'}",
            param_hint=what,
        )
    return parsed


@click.command()
@click.argument("name", required=False)
@click.option(
    "--resend",
    "resend_id",
    metavar="TASK_ID",
    help="Send TASK_ID again: its name, args and queue from the result backend (result_extended).",
)
@click.option("-a", "--args", help="Positional arguments as a JSON list, e.g. '[2, 2]'.")
@click.option("-k", "--kwargs", help="Keyword arguments as a JSON object.")
@click.option("--queue", help="Queue to send to.")
@click.option("--countdown", type=float, help="Run no sooner than this many seconds from now.")
@click.option("--expires", type=float, help="Seconds after which the task is not run.")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="With --wait.")
@click.pass_obj
def call(
    obj: Any,
    name: str | None,
    resend_id: str | None,
    args: str | None,
    kwargs: str | None,
    queue: str | None,
    countdown: float | None,
    expires: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Send task NAME (or --resend TASK_ID again) and print its id, or its result with --wait."""
    app = obj.app
    app.import_includes()
    if resend_id is not None:
        if name or args or kwargs:
            raise click.UsageError("--resend takes the name and arguments of TASK_ID: give neither")
        from ..resend import find_call

        found = find_call(app, resend_id)
        name, call_args, call_kwargs = found.name, found.args, found.kwargs
        queue = queue or found.queue
    elif name is None:
        raise click.UsageError("give a task NAME (or --resend TASK_ID)")
    else:
        call_args, call_kwargs = (
            _json_arg(args, "--args", list),
            _json_arg(kwargs, "--kwargs", dict),
        )
    result = app.send_task(
        name, call_args, call_kwargs, queue=queue, countdown=countdown, expires=expires
    )
    if not wait:
        click.echo(result.id)
        return
    click.echo(json.dumps(result.get(timeout=timeout)))


@click.command()
@click.argument("task_id")
@click.option("--timeout", type=float, help="Wait up to this many seconds for the task to finish.")
@click.option(
    "--traceback", "show_traceback", is_flag=True, help="Print the traceback of a failure."
)
@click.pass_obj
def result(obj: Any, task_id: str, timeout: float | None, show_traceback: bool) -> None:
    """Print the state and result of TASK_ID."""
    handle = obj.app.AsyncResult(task_id)
    if timeout is not None:
        handle.get(timeout=timeout, propagate=False)
    state = handle.state
    value = handle.traceback if show_traceback and handle.failed() else handle.result
    click.echo(f"{state} {value if isinstance(value, str) else json.dumps(value, default=repr)}")


@click.command()
@click.option("-Q", "--queues", multiple=True, help="Queues to purge (default: the default queue).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(obj: Any, queues: tuple[str, ...], force: bool) -> None:
    """Delete every waiting message in the queues."""
    app = obj.app
    names = [n for value in queues for n in value.split(",") if n] or [app.conf.task_default_queue]
    if not force:
        click.confirm(f"Delete every waiting task in {', '.join(names)}?", abort=True)
    total = 0
    with app.broker_connection() as connection:
        channel = connection.default_channel
        for name in names:
            total += app.queue_by_name(name)(channel).purge() or 0
    click.echo(f"Purged {total} message{'s' if total != 1 else ''} from {len(names)} queue(s).")


COMMANDS = [call, result, purge]
