"""The `tq` command group: global options, app loading and error handling."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .. import __version__
from ..app import App
from ..errors import AppNotFound, ConfigError, TQError
from .appload import find_app

#: Exit codes: usage errors as click does, runtime errors 1.
EXIT_USAGE = 2
EXIT_FAILURE = 1

#: Each subcommand as "module:attribute" under tq.cli. A command's module is imported only
#: when that command runs, so `tq worker` never loads the console, rich or the supervisor.
COMMANDS = {
    "worker": "worker:worker",
    "multi": "multi:multi",
    "systemd": "systemd:systemd",
    "console": "console:console",
    "call": "calls:call",
    "result": "calls:result",
    "purge": "calls:purge",
    "inspect": "remote:inspect",
    "control": "remote:control",
    "status": "remote:status",
    "scale": "remote:scale",
    "events": "events:events",
    "up": "supervise:up",
    "ps": "supervise:ps",
    "restart": "supervise:restart",
    "down": "supervise:down",
    "kill": "supervise:kill",
    "logs": "supervisor_cmd:logs",
    "supervisor": "supervisor_cmd:supervisor",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module when the subcommand is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        module = importlib.import_module(f".{module_name}", __package__)
        command: click.Command = getattr(module, attribute)
        return command


class CLIContext:
    """What the global options say: how to find the app and what to override."""

    def __init__(
        self,
        app_spec: str | None,
        broker: str | None,
        result_backend: str | None,
        workdir: str | None,
    ) -> None:
        self.app_spec = app_spec
        self.broker = broker
        self.result_backend = result_backend
        self.workdir = workdir
        self._app: App | None = None

    @property
    def app(self) -> App:
        """The App named by -A (or TQ_APP), with -b/--result-backend applied."""
        if self._app is None:
            if not self.app_spec:
                raise click.UsageError("no app given: pass -A/--app proj (or set TQ_APP)")
            app = find_app(self.app_spec, self.workdir)
            if self.broker:
                app.conf.broker_url = self.broker
            if self.result_backend:
                app.conf.result_backend = self.result_backend
            self._app = app
        return self._app


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-A",
    "--app",
    "app_spec",
    envvar="TQ_APP",
    metavar="MODULE[:ATTR]",
    help="The app: proj, proj.tq, proj.tq:app ...",
)
@click.option("-b", "--broker", help="Broker URL, overrides the app's broker_url.")
@click.option("--result-backend", help="Result backend URL, overrides the app's result_backend.")
@click.option(
    "--workdir", type=click.Path(file_okay=False), help="Directory to import the app from."
)
@click.version_option(__version__, prog_name="tq")
@click.pass_context
def cli(
    ctx: click.Context,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    workdir: str | None,
) -> None:
    """tq: a task queue that speaks Celery's protocol."""
    ctx.obj = CLIContext(app_spec, broker, result_backend, workdir)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `tq` script: one red line and an exit code instead of a traceback."""
    try:
        return cli.main(args=argv, prog_name="tq", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.secho("Aborted.", fg="red", err=True)
        sys.exit(EXIT_FAILURE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (AppNotFound, ConfigError) as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    except TQError as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        sys.exit(130)
