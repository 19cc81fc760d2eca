"""``operone run|map|jobs|job|cancel``: submit jobs, see them, stop them."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import click

from ._common import Obj, _age, _client, _client_options, _fail, _jsonable, _parse_args, _query

__all__ = ["cancel", "job", "jobs", "map_cmd", "run"]

#: A timeout: seconds, more than zero.
TIMEOUT = click.FloatRange(min=0, min_open=True)
#: The states QUERY jobs knows (docs/protocol.md 5.11).
STATES = ("queued", "running", "done", "failed", "cancelled")
#: Exit code of a command interrupted by Ctrl-C (128 + SIGINT, as shells do).
EXIT_INTERRUPTED = 130


async def _cancel_and_locate(c: Any, jid: str, reason: str) -> tuple[bool, str | None]:
    """QUERY cancel, then QUERY job: (cancelled, the node it ran on)."""
    r = await c.query("cancel", {"job": jid, "reason": reason}, timeout=5.0)
    node: str | None = None
    try:
        info = await c.query("job", {"id": jid}, timeout=5.0)
        node = info.get("node") if isinstance(info, dict) else None
    except Exception:  # an older broker without QUERY job: the node is unknown
        pass
    return bool(r.get("cancelled")), node


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
@click.option("--timeout", type=TIMEOUT, default=60.0, show_default=True,
              help="Seconds for the job, all its attempts included.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Attempts on other nodes after a worker or node failure.")
@click.option("--not-idempotent", is_flag=True,
              help="Never run twice: no retry once it may have started.")
@click.option("--local", "prefer_local", is_flag=True, help="Prefer this node when it can.")
@click.option("--raw", is_flag=True,
              help="For shell: stream stdout/stderr live and exit with the command's code.")
@click.option("--detach", is_flag=True,
              help="Print the job id once the broker has the job, and return (see it with"
                   " operone job ID).")
@_client_options
@click.pass_obj
def run(obj: Obj, tool: str, argv: tuple[str, ...], kv: tuple[str, ...], json_args: str | None,
        on: str | None, caps: tuple[str, ...], priority: str, timeout: float, retries: int,
        not_idempotent: bool, prefer_local: bool, raw: bool, detach: bool,
        broker_addr: str | None, server_key: str | None) -> None:
    """Run TOOL and print its result as JSON.

    The job id goes to stderr at once (operone job ID, operone cancel ID);
    Ctrl-C cancels the job.  Shell commands go after --:
    operone run shell --raw -- uname -a
    """
    from ..protocol.bodies import Progress

    config = obj.config()
    obj.logging(config)
    args = _parse_args(kv, json_args, argv, tool)
    if detach and raw:
        raise click.UsageError("--detach and --raw do not go together (nothing to stream)")
    client = _client(obj, config, broker_addr, server_key)
    streamed: list[bool] = []
    interrupted: list[tuple[str, bool, str | None]] = []

    def show(p: Progress) -> None:
        if p.stream is not None and p.data is not None:
            streamed.append(True)
            out = sys.stdout if p.stream == "stdout" else sys.stderr
            out.write(p.data)
            out.flush()
        elif p.message or p.fraction is not None:
            pct = "" if p.fraction is None else f"{p.fraction * 100:5.1f}% "
            click.echo(f"[progress] {pct}{p.message or ''}", err=True)

    async def accepted(c: Any, jid: str) -> dict[str, Any]:
        """The broker's record of the job, once it has it (--detach)."""
        deadline = time.monotonic() + min(timeout, 10.0)
        while True:
            info: dict[str, Any] = await c.query("job", {"id": jid}, timeout=5.0)
            if info.get("state") is not None or time.monotonic() >= deadline:
                return info
            await asyncio.sleep(0.05)

    async def go() -> Any:
        async with client as c:
            fut = c.submit(tool, args, on=on, capabilities=caps, priority=priority,
                           timeout=timeout, retries=retries,
                           idempotent=not not_idempotent, prefer_local=prefer_local,
                           on_progress=show if raw else None)
            jid = fut.job_id
            if detach:
                # Its answer comes after we are gone; the broker keeps it (operone job).
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
                info = await accepted(c, jid)
                if fut.done() and fut.exception() is not None:
                    raise fut.exception()  # refused at once (no such tool, ...)
                if info.get("state") is None:
                    _fail(f"the broker did not confirm job {jid} (it may still run:"
                          f" operone job {jid})")
                click.echo(jid)
                where = f" on {info['node']}" if info.get("node") else ""
                click.echo(f"job {jid} {info['state']}{where}; follow it with: operone job"
                           f" {jid}", err=True)
                return None
            if not raw or sys.stderr.isatty():
                click.echo(f"job {jid}", err=True)
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:  # Ctrl-C: cancel the job where it runs
                if fut.done():
                    raise
                ok, node = await _cancel_and_locate(c, jid, "interrupted (Ctrl-C)")
                fut.cancel()
                interrupted.append((jid, ok, node))
                return None

    res = asyncio.run(go())
    if interrupted:
        jid, ok, node = interrupted[0]
        where = f" on {node}" if node else ""
        click.echo(f"cancelled job {jid}{where}" if ok else
                   f"job {jid} had already finished{where}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if res is None:  # --detach
        return
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
@click.option("--concurrency", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--timeout", type=TIMEOUT, default=60.0, show_default=True,
              help="Seconds for each job, all its attempts included.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True)
@_client_options
@click.pass_obj
def map_cmd(obj: Obj, tool: str, args_file: Any, on: str | None, caps: tuple[str, ...],
            concurrency: int, timeout: float, retries: int, broker_addr: str | None,
            server_key: str | None) -> None:
    """Run TOOL once per line of --args-file; print results as JSON lines, in
    order, with progress on stderr (done/total, rate, ETA) and the failures
    counted by error code at the end."""
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
    from ._progress import job_progress

    client = _client(obj, config, broker_addr, server_key)
    results: list[Any] = [None] * len(args_list)
    failures: Counter[str] = Counter()

    async def go() -> None:
        async with client as c:
            with job_progress(tool, len(args_list)) as advance:
                async for i, r in c.as_completed(tool, args_list, concurrency=concurrency,
                                                 on=on, capabilities=caps, timeout=timeout,
                                                 retries=retries):
                    if isinstance(r, BaseException):
                        code = getattr(r, "code", type(r).__name__)
                        failures[code] += 1
                        results[i] = {"error": code, "message": str(r)}
                    else:
                        results[i] = {"executed_on": r.executed_on,
                                      "value": _jsonable(r.value)}
                    advance()

    asyncio.run(go())
    for r in results:
        click.echo(json.dumps(r))
    if failures:
        by_code = ", ".join(f"{code} {n}" for code, n in failures.most_common())
        _fail(f"{sum(failures.values())} of {len(args_list)} jobs failed: {by_code}", 2)



@click.command()
@click.argument("job_id")
@_client_options
@click.pass_obj
def cancel(obj: Obj, job_id: str, broker_addr: str | None, server_key: str | None) -> None:
    """Cancel job JOB_ID (submitted through this broker) wherever it runs."""
    async def go(c: Any) -> tuple[bool, str | None, dict[str, Any] | None]:
        ok, node = await _cancel_and_locate(c, job_id, "operone cancel")
        info = None
        if not ok:
            try:
                info = await c.query("job", {"id": job_id}, timeout=5.0)
            except Exception:
                info = None
        return ok, node, info

    ok, node, info = _query(obj, broker_addr, server_key, go)
    if ok:
        click.echo(f"cancelled job {job_id}" + (f" on {node}" if node else ""))
        return
    state = info.get("state") if isinstance(info, dict) else None
    if state in ("queued", "running"):
        _fail(f"job '{job_id}' runs here for node '{info.get('submitter')}' (its origin):"
              " only the broker it was submitted to can cancel it; run operone cancel"
              " there")
    if state is not None:
        _fail(f"job '{job_id}' has already finished ({state})")
    _fail(f"no job '{job_id}' on this broker (it lists jobs in progress and the last"
          " finished ones: operone jobs)")


def _job_line(j: dict[str, Any], now: float) -> str:
    err = j.get("error") or {}
    code = f"  {err.get('code')}" if isinstance(err, dict) and err.get("code") else ""
    dur = "-" if j.get("duration") is None else f"{j['duration']:.2f}s"
    return (f"{j['id']:<28} {j.get('tool') or '-':<14} {j.get('node') or '-':<14}"
            f" {j.get('state') or '-':<9} {j.get('attempts') or '-':>3}"
            f" {_age(j.get('started'), now):>7} {dur:>8}  {j.get('submitter') or '-'}{code}")


JOBS_HEADER = (f"{'ID':<28} {'TOOL':<14} {'NODE':<14} {'STATE':<9} {'ATT':>3} {'AGE':>7}"
               f" {'DURATION':>8}  SUBMITTER")


def _jobs_text(jobs: list[dict[str, Any]]) -> str:
    now = time.time()
    if not jobs:
        return "no jobs"
    return "\n".join([JOBS_HEADER, *(_job_line(j, now) for j in jobs)])


async def _ask_jobs(c: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    from ..errors import BadRequest

    try:
        answer: list[dict[str, Any]] = await c.query("jobs", args, timeout=10.0)
    except BadRequest as exc:
        if "unknown query" in str(exc):
            _fail("this broker does not report jobs (it is older than this command)")
        raise
    return answer


@click.command()
@click.option("--node", metavar="NODE", help="Only jobs that run (or ran) on NODE.")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds (Ctrl-C ends).")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --watch: a line each).")
@_client_options
@click.pass_obj
def jobs(obj: Obj, node: str | None, state: str | None, limit: int, watch: bool,
         interval: float, as_json: bool, broker_addr: str | None,
         server_key: str | None) -> None:
    """Jobs in flight and recently finished on this broker: the jobs its clients
    submitted (wherever they run) and those it runs for other brokers."""
    args: dict[str, Any] = {"limit": limit}
    if node:
        args["node"] = node
    if state:
        args["state"] = state
    if not watch:
        found = _query(obj, broker_addr, server_key, lambda c: _ask_jobs(c, args))
        click.echo(json.dumps(found, indent=2) if as_json else _jobs_text(found))
        return
    from ._watch import watch_loop

    async def frame(c: Any) -> str:
        found = await _ask_jobs(c, args)
        return json.dumps(found) if as_json else _jobs_text(found)

    watch_loop(obj, broker_addr, server_key, frame, interval, plain=as_json)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def job(obj: Obj, job_id: str, as_json: bool, broker_addr: str | None,
        server_key: str | None) -> None:
    """One job: state, attempts, node, timings, and its result or error while
    this broker remembers it."""
    from ..errors import BadRequest

    async def go(c: Any) -> dict[str, Any]:
        try:
            info: dict[str, Any] = await c.query("job", {"id": job_id}, timeout=10.0)
        except BadRequest as exc:
            if "unknown query" in str(exc):
                _fail("this broker does not report jobs (it is older than this command)")
            raise
        return info

    info = _query(obj, broker_addr, server_key, go)
    if as_json:
        click.echo(json.dumps(_jsonable(info), indent=2))
    if info.get("state") is None:
        _fail(f"no job '{job_id}' on this broker (never seen, or forgotten: it remembers"
              " the last 1000 finished jobs)")
    if as_json:
        return
    now = time.time()
    click.echo(f"job {info['id']}  {info['state']}")
    click.echo(f"  tool       {info.get('tool')}")
    click.echo(f"  node       {info.get('node') or '-'}")
    click.echo(f"  attempts   {info.get('attempts')}")
    click.echo(f"  submitter  {info.get('submitter') or '-'}")
    click.echo(f"  priority   {info.get('priority') or '-'}   timeout {info.get('timeout')}")
    started = info.get("started")
    if started is not None:
        click.echo(f"  started    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
                   f" ({_age(started, now)} ago)")
    if info.get("duration") is not None:
        click.echo(f"  duration   {info['duration']:.3f} s")
    for n, h in enumerate(info.get("history") or [], 1):
        err = h.get("error") or {}
        how = f"{err.get('code')}: {err.get('message')}" if err else (
            "running" if h.get("finished") is None else "ok")
        click.echo(f"  attempt {n}  on {h.get('node')}  {how}")
    e = info.get("error")
    if e:
        click.echo(f"  error      {e.get('code')}: {e.get('message')}")
    if "result" in info:
        click.echo("  result     " + json.dumps(_jsonable(info["result"])))
