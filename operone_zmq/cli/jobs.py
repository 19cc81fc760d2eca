"""``operone run|map|cancel``: submit jobs and follow them."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ._common import Obj, _client_options, _fail, _jsonable, _parse_args, _query

__all__ = ["cancel", "map_cmd", "run"]


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("tool")
@click.argument("argv", nargs=-1)
@click.option("--arg", "kv", multiple=True, metavar="KEY=VALUE",
              help="Tool argument (VALUE parsed as JSON when it can be); repeatable.")
@click.option("--json", "json_args", metavar="OBJECT", help="Tool arguments as a JSON object.")
@click.option("--on", "on", metavar="NODE", help="Run on this node.")
@click.option("--cap", "caps", multiple=True, help="Required capability; repeatable.")
@click.option("--priority", type=click.Choice(["critical", "high", "normal", "low"]),
              default="normal")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.option("--retries", type=int, default=2, show_default=True,
              help="Attempts on other nodes after a worker or node failure.")
@click.option("--not-idempotent", is_flag=True,
              help="Never run twice: no retry once it may have started.")
@click.option("--local", "prefer_local", is_flag=True, help="Prefer this node when it can.")
@click.option("--raw", is_flag=True,
              help="For shell: stream stdout/stderr live and exit with the command's code.")
@_client_options
@click.pass_obj
def run(obj: Obj, tool: str, argv: tuple[str, ...], kv: tuple[str, ...], json_args: str | None,
        on: str | None, caps: tuple[str, ...], priority: str, timeout: float, retries: int,
        not_idempotent: bool, prefer_local: bool, raw: bool, broker_addr: str | None,
        server_key: str | None) -> None:
    """Run TOOL and print its result as JSON.

    Shell commands go after --:  operone run shell --raw -- uname -a
    """
    from ..aio.runtime import async_client_for
    from ..protocol.bodies import Progress

    config = obj.config()
    obj.logging(config)
    args = _parse_args(kv, json_args, argv, tool)
    streamed: list[bool] = []

    def show(p: Progress) -> None:
        if p.stream is not None and p.data is not None:
            streamed.append(True)
            out = sys.stdout if p.stream == "stdout" else sys.stderr
            out.write(p.data)
            out.flush()
        elif p.message or p.fraction is not None:
            pct = "" if p.fraction is None else f"{p.fraction * 100:5.1f}% "
            click.echo(f"[progress] {pct}{p.message or ''}", err=True)

    async def go() -> Any:
        async with async_client_for(obj.home, config, broker_addr, server_key) as c:
            return await c.submit(tool, args, on=on, capabilities=caps, priority=priority,
                                  timeout=timeout, retries=retries,
                                  idempotent=not not_idempotent, prefer_local=prefer_local,
                                  on_progress=show if raw else None)

    res = asyncio.run(go())
    if raw and tool == "shell" and isinstance(res.value, dict):
        if not streamed:
            sys.stdout.write(res.value.get("stdout", ""))
            sys.stderr.write(res.value.get("stderr", ""))
        sys.exit(int(res.value.get("exit_code", 0)))
    click.echo(json.dumps({"executed_on": res.executed_on, "duration": round(res.duration, 6),
                           "value": _jsonable(res.value)}, indent=2))


@click.command("map")
@click.argument("tool")
@click.option("--args-file", type=click.File("r"), required=True,
              help="One JSON object of arguments per line ('-' for stdin).")
@click.option("--on", "on", metavar="NODE", help="Run every job on this node.")
@click.option("--cap", "caps", multiple=True, help="Required capability; repeatable.")
@click.option("--concurrency", type=int, default=100, show_default=True)
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.option("--retries", type=int, default=2, show_default=True)
@_client_options
@click.pass_obj
def map_cmd(obj: Obj, tool: str, args_file: Any, on: str | None, caps: tuple[str, ...],
            concurrency: int, timeout: float, retries: int, broker_addr: str | None,
            server_key: str | None) -> None:
    """Run TOOL once per line of --args-file; print results as JSON lines, in
    order, with a progress bar on stderr."""
    from ..aio.runtime import async_client_for

    config = obj.config()
    obj.logging(config)
    args_list = []
    for n, line in enumerate(args_file, 1):
        if line.strip():
            try:
                a = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"line {n}: {exc}", param_hint="--args-file") from exc
            if not isinstance(a, dict):
                raise click.BadParameter(f"line {n}: not a JSON object",
                                         param_hint="--args-file")
            args_list.append(a)
    results: list[Any] = [None] * len(args_list)
    failed = 0

    async def go() -> None:
        nonlocal failed
        async with async_client_for(obj.home, config, broker_addr, server_key) as c:
            with click.progressbar(length=len(args_list), label=f"{tool}",
                                   file=sys.stderr) as bar:
                async for i, r in c.as_completed(tool, args_list, concurrency=concurrency,
                                                 on=on, capabilities=caps, timeout=timeout,
                                                 retries=retries):
                    if isinstance(r, BaseException):
                        failed += 1
                        results[i] = {"error": getattr(r, "code", type(r).__name__),
                                      "message": str(r)}
                    else:
                        results[i] = {"executed_on": r.executed_on,
                                      "value": _jsonable(r.value)}
                    bar.update(1)

    asyncio.run(go())
    for r in results:
        click.echo(json.dumps(r))
    if failed:
        _fail(f"{failed} of {len(args_list)} jobs failed", 2)



@click.command()
@click.argument("job_id")
@_client_options
@click.pass_obj
def cancel(obj: Obj, job_id: str, broker_addr: str | None, server_key: str | None) -> None:
    """Cancel job JOB_ID (submitted through this broker) wherever it runs."""
    ok = _query(obj, broker_addr, server_key, lambda c: c.cancel_remote(job_id))
    if not ok:
        _fail(f"no job '{job_id}' in progress on this broker")
    click.echo(f"cancelled {job_id}")
