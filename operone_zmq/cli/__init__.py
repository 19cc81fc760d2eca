"""The ``operone`` command line: a thin click layer over the Python API.

Global options come before the command (``operone --home DIR run echo``) and
can also be set with ``OPERONE_HOME``, ``OPERONE_LOG_FORMAT``,
``OPERONE_LOG_LEVEL``.  Each command calls ``asyncio.run`` once at most.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..config import Home, unknown_env_vars
from ._common import Obj, _Group
from .dashboard import dashboard
from .events import events
from .files import cp
from .home import init
from .jobs import cancel, job, jobs, map_cmd, run
from .keys import keys, token
from .mesh import broadcast, connect, discover, peers, route, stats, topology
from .node import broker, logs, node, worker
from .qos import qos
from .ssh import ssh
from .status import status, tools

__all__ = ["main"]


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the version, and whether this package is the compiled
    build (how many modules) or pure Python."""
    if not value or ctx.resilient_parsing:
        return
    from .. import __version__, compiled_modules

    n = len(compiled_modules())
    build = f"compiled: {n} module{'s' if n != 1 else ''}" if n else "pure Python"
    click.echo(f"operone, version {__version__} ({build})")
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="OPERONE_HOME",
              help="Node home directory (config, keys, trust store).")
@click.option("--log-format", type=click.Choice(["console", "json"]), envvar="OPERONE_LOG_FORMAT",
              default=None, help="Log format (default from config).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              envvar="OPERONE_LOG_LEVEL", default=None, help="Log level (default from config).")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version (and the build) and exit.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, log_format: str | None,
        log_level: str | None) -> None:
    """operone: run tools on a secure ZeroMQ mesh of PCs.

    The node's home is --home, else $OPERONE_HOME, else ~/.config/operone
    (%APPDATA%\\operone on Windows)."""
    for unknown in unknown_env_vars(os.environ):
        click.echo(f"warning: unknown variable {unknown}", err=True)
    ctx.obj = Obj(Home(home.expanduser().absolute()) if home else Home.default(), {},
                  log_format, log_level)


# One module per command group; each defines its commands, this adds them.
for _command in (init, broker, worker, node, logs, run, map_cmd, jobs, job, cancel, qos, cp,
                 stats, peers, topology, route, connect, broadcast, discover, ssh, keys, token,
                 dashboard, status, tools, events):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``operone`` console script."""
    cli(prog_name="operone")
