"""What every command group shares: the context object, the error exit,
the client options, argument parsing and the one-query helper."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from ..config import Config, Home, load_config
from ..errors import JobError, OperoneError
from ..logs import configure_logging

__all__ = ["Obj", "_Group", "_age", "_client", "_client_options", "_fail", "_jsonable",
           "_parse_args", "_query", "_self_command", "_write_ready"]

#: Seconds the CLI waits for a TCP connection to the broker's first port
#: before it talks CurveZMQ to it: a refused connection means no broker runs
#: there, and the command says so at once instead of after its timeout.
PROBE_TIMEOUT = 1.0


@dataclass
class Obj:
    """What every command gets in ``ctx.obj``."""

    home: Home
    overrides: dict[str, Any]
    log_format: str | None
    log_level: str | None

    def config(self) -> Config:
        return load_config(self.home, self.overrides)

    def logging(self, config: Config | None = None, stream: Any = None) -> None:
        fmt = self.log_format or (config.logging.format if config else "console")
        level = self.log_level or (config.logging.level if config else "info")
        configure_logging(fmt, level, stream)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns our errors into one clear line and an exit code, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JobError as exc:
            where = f" on {exc.node}" if exc.node else ""
            rt = f" [{exc.remote_type}]" if exc.remote_type else ""
            _fail(f"{exc.code}{where}{rt}: {exc.message}", 2)
        except OperoneError as exc:
            _fail(str(exc), 1)



def _self_command() -> tuple[list[str], dict[str, str] | None]:
    """The argv prefix and environment (None: this process's) that run this
    very ``operone_zmq`` in a child (``node start``'s workers, ``--detach``).

    ``python -m`` puts the child's working directory first on ``sys.path``:
    a node started in a directory holding another ``operone_zmq`` (a
    checkout, an older version, a planted one) would run its workers from
    that.  ``-P`` (3.11+) leaves it off.  When this process found its own
    package only through that entry (``python -m operone_zmq`` run from a
    checkout), the child is given the directory on ``PYTHONPATH`` instead."""
    import os

    from .. import __file__ as package_file

    root = os.path.dirname(os.path.dirname(os.path.abspath(package_file)))
    entries = sys.path if sys.flags.safe_path else sys.path[1:]
    if any(os.path.abspath(e or ".") == root for e in entries):
        return [sys.executable, "-P", "-m", "operone_zmq"], None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    return [sys.executable, "-P", "-m", "operone_zmq"], env


def _write_ready(path: Path | None, info: dict[str, Any]) -> None:
    if path is not None:
        from .. import compiled_modules

        # "compiled": how many of this process's modules are the mypyc build
        # (0: pure Python), so a benchmark knows what its daemons run.
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({**info, "compiled": len(compiled_modules())}))
        tmp.replace(path)



def _client_options(f: Any) -> Any:
    f = click.option("--broker", "broker_addr", metavar="HOST:PORT",
                     help="Broker to talk to (default: this node's).")(f)
    f = click.option("--server-key", metavar="KEY|FILE",
                     help="The broker's public key (default: this node's own).")(f)
    return f


def _parse_args(kv: tuple[str, ...], json_args: str | None, rest: tuple[str, ...],
                tool: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if json_args:
        try:
            loaded = json.loads(json_args)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from exc
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--json")
        args.update(loaded)
    for item in kv:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"expected KEY=VALUE, not {item!r}", param_hint="--arg")
        try:
            args[k] = json.loads(v)
        except json.JSONDecodeError as exc:
            if v[:1] in ("{", "[", '"'):  # meant as JSON: a typo must not become a string
                raise click.BadParameter(f"{k}={v}: not valid JSON ({exc}); quote a plain"
                                         f" string that starts with {v[0]!r} as JSON",
                                         param_hint="--arg") from exc
            args[k] = v
    if rest:
        if tool != "shell":
            raise click.BadParameter("arguments after -- are only for the shell tool")
        args["argv"] = list(rest)
    return args


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return v.hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v



def _probe(host: str, port: int) -> None:
    """Fail at once when nothing listens at ``host:port`` (a broker that is
    not running); a slow or filtered address is left to the client's timeout."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return
    except ConnectionRefusedError:
        _fail(f"no broker is running at {host}:{port} (start it: operone node start"
              " [--detach]; see: operone node status)", 3)
    except OSError:
        return


def _client(obj: Obj, config: Config, broker_addr: str | None,
            server_key: str | None, **kw: Any) -> Any:
    """An AsyncClient of the broker, after checking that one is running there."""
    from ..aio.runtime import async_client_for

    c = async_client_for(obj.home, config, broker_addr, server_key, **kw)
    _probe(c.host, c.base_port)
    return c


def _query(obj: Obj, broker_addr: str | None, server_key: str | None,
           fn: Any) -> Any:
    config = obj.config()
    obj.logging(config)
    client = _client(obj, config, broker_addr, server_key)

    async def go() -> Any:
        async with client as c:
            return await fn(c)

    return asyncio.run(go())


def _age(started: float | None, now: float | None = None) -> str:
    """Wall-clock seconds since ``started``, for people: 4s, 3m05s, 2h10m, 3d04h."""
    if started is None:
        return "-"
    s = max(0, int((time.time() if now is None else now) - started))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
