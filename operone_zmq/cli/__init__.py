"""The ``operone`` command line: a thin click layer over the Python API.

Global options come before the command (``operone --home DIR run echo``) and
can also be set with ``OPERONE_HOME``, ``OPERONE_LOG_FORMAT``,
``OPERONE_LOG_LEVEL``.  Each command calls ``asyncio.run`` once at most.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from ..config import Config, Home, init_home, load_config
from ..errors import ConfigError, JobError, OperoneError
from ..logs import configure_logging

__all__ = ["main"]


@dataclass
class Obj:
    """What every command gets in ``ctx.obj``."""

    home: Home
    overrides: dict[str, Any]
    log_format: str | None
    log_level: str | None

    def config(self) -> Config:
        return load_config(self.home, self.overrides)

    def logging(self, config: Config | None = None) -> None:
        fmt = self.log_format or (config.logging.format if config else "console")
        level = self.log_level or (config.logging.level if config else "info")
        configure_logging(fmt, level)


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="OPERONE_HOME",
              help="Node home directory (config, keys, trust store).")
@click.option("--log-format", type=click.Choice(["console", "json"]), envvar="OPERONE_LOG_FORMAT",
              default=None, help="Log format (default from config).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              envvar="OPERONE_LOG_LEVEL", default=None, help="Log level (default from config).")
@click.version_option(package_name="operone-zmq")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, log_format: str | None,
        log_level: str | None) -> None:
    """operone: run tools on a secure ZeroMQ mesh of PCs."""
    ctx.obj = Obj(Home(home.expanduser().absolute()) if home else Home.default(), {},
                  log_format, log_level)


# ------------------------------------------------------------------ init
@cli.command()
@click.option("--node-id", help="This node's id (default: from the hostname).")
@click.option("--host", help="Address the broker binds (default 127.0.0.1).")
@click.option("--port", "base_port", type=int, help="First of the four class ports (7700).")
@click.option("--fs-root", type=click.Path(path_type=Path),
              help="Directory the fs.* tools may use (default: disabled).")
@click.option("--workers", "workers_count", type=int, help="Workers 'node start' runs.")
@click.option("--force", is_flag=True, help="Replace an existing config and key pair.")
@click.pass_obj
def init(obj: Obj, node_id: str | None, host: str | None, base_port: int | None,
         fs_root: Path | None, workers_count: int | None, force: bool) -> None:
    """Create the node's key pair, trust store and config file."""
    fields: dict[str, Any] = {}
    if host:
        fields["host"] = host
    if base_port:
        fields["base_port"] = base_port
    if fs_root:
        fs_root.mkdir(parents=True, exist_ok=True)
        fields["tools_fs_root"] = str(fs_root.expanduser().absolute())
    if workers_count is not None:
        fields["workers_count"] = workers_count
    config, kp = init_home(obj.home, node_id, force=force, **fields)
    click.echo(f"initialised node '{config.node.id}' in {obj.home.path}")
    click.echo(f"  config:      {obj.home.config_file}")
    click.echo(f"  public key:  {obj.home.node_public} (fingerprint {kp.fingerprint})")
    click.echo(f"  ports:       {config.node.host}:{config.node.base_port}..+3")


# ---------------------------------------------------------------- broker
@cli.group()
def broker() -> None:
    """Run this node's broker."""


def _write_ready(path: Path | None, info: dict[str, Any]) -> None:
    if path is not None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(path)


@broker.command("start")
@click.option("--peer", "peers", multiple=True, metavar="NODE@HOST:PORT",
              help="Link to this broker (its key must be trusted as NODE); repeatable.")
@click.option("--discover", is_flag=True, default=None,
              help="Advertise and find brokers with zeroconf (mesh.discover).")
@click.option("--host", help="Bind address (overrides node.host).")
@click.option("--port", "base_port", type=int, help="First class port (overrides node.base_port).")
@click.option("--ready-file", type=click.Path(path_type=Path),
              help="Write a JSON line here once the broker is serving.")
@click.pass_obj
def broker_start(obj: Obj, peers: tuple[str, ...], discover: bool | None, host: str | None,
                 base_port: int | None, ready_file: Path | None) -> None:
    """Start the broker in the foreground (Ctrl-C or SIGTERM stops it)."""
    from ..aio.runtime import broker_from_config, run_until_signalled

    if host:
        obj.overrides["node.host"] = host
    if base_port:
        obj.overrides["node.base_port"] = base_port
    if discover:
        obj.overrides["mesh.discover"] = True
    config = obj.config()
    obj.logging(config)
    b = broker_from_config(obj.home, config, peers)
    asyncio.run(run_until_signalled(
        b.start, b.stop, b.wait_stopped,
        lambda: _write_ready(ready_file, {"node": b.node_id, "endpoints": b.endpoints,
                                          "workers": b.worker_endpoint, "pid": os.getpid()})))


# ---------------------------------------------------------------- worker
@cli.group()
def worker() -> None:
    """Run worker processes that execute tools for the local broker."""


@worker.command("start")
@click.option("--name", help="Worker name (default: NODE.wPID).")
@click.option("--tools", "modules", multiple=True,
              help="Tool module to load (dotted name or .py path); repeatable.")
@click.option("--cap", "caps", multiple=True, help="Capability to advertise; repeatable.")
@click.option("--concurrency", type=int, help="Jobs this worker runs at once.")
@click.option("--threads", type=int, help="Threads for blocking tools.")
@click.option("--ready-file", type=click.Path(path_type=Path),
              help="Write a JSON line here once the worker has started.")
@click.option("--parent-pid", type=int, hidden=True,
              help="Exit when this process (the node supervisor) dies.")
@click.pass_obj
def worker_start(obj: Obj, name: str | None, modules: tuple[str, ...], caps: tuple[str, ...],
                 concurrency: int | None, threads: int | None, ready_file: Path | None,
                 parent_pid: int | None) -> None:
    """Start one worker in the foreground."""
    from ..aio.runtime import run_until_signalled, worker_from_config
    from ..aio.supervisor import die_with_parent

    if parent_pid is not None and not die_with_parent(parent_pid):
        sys.exit(0)  # the supervisor died while we were starting

    if concurrency:
        obj.overrides["workers.concurrency"] = concurrency
    if threads:
        obj.overrides["workers.threads"] = threads
    config = obj.config()
    obj.logging(config)
    w = worker_from_config(obj.home, config, name=name, modules=modules,
                           caps=caps or None, parent_pid=parent_pid)
    asyncio.run(run_until_signalled(
        w.start, w.stop, w.wait_stopped,
        lambda: _write_ready(ready_file, {"worker": w.name, "pid": os.getpid()})))


# ------------------------------------------------------------------ node
@cli.group()
def node() -> None:
    """Run a whole node: the broker and its workers."""


def _worker_argv(obj: Obj, modules: tuple[str, ...], caps: tuple[str, ...]) -> list[str]:
    argv = [sys.executable, "-m", "operone_zmq", "--home", str(obj.home.path)]
    if obj.log_format:
        argv += ["--log-format", obj.log_format]
    if obj.log_level:
        argv += ["--log-level", obj.log_level]
    # No --name: each worker names itself NODE.wPID, unique per incarnation.
    argv += ["worker", "start", "--parent-pid", str(os.getpid())]
    for m in modules:
        argv += ["--tools", m]
    for c in caps:
        argv += ["--cap", c]
    return argv


@node.command("start")
@click.option("--peer", "peers", multiple=True, metavar="NODE@HOST:PORT",
              help="Link to this broker (its key must be trusted as NODE); repeatable.")
@click.option("--discover", is_flag=True, default=None,
              help="Advertise and find brokers with zeroconf (mesh.discover).")
@click.option("--workers", "count", type=int, help="Worker processes (default: workers.count).")
@click.option("--tools", "modules", multiple=True, help="Tool module for the workers; repeatable.")
@click.option("--cap", "caps", multiple=True, help="Capability the workers advertise; repeatable.")
@click.option("--host", help="Bind address (overrides node.host).")
@click.option("--port", "base_port", type=int, help="First class port (overrides node.base_port).")
@click.option("--ready-file", type=click.Path(path_type=Path),
              help="Write a JSON line here once the broker serves and every worker has"
                   " registered (jobs can run).")
@click.pass_obj
def node_start(obj: Obj, peers: tuple[str, ...], discover: bool | None, count: int | None,
               modules: tuple[str, ...], caps: tuple[str, ...], host: str | None,
               base_port: int | None, ready_file: Path | None) -> None:
    """Start the broker and N worker processes; restart workers that die."""
    from ..aio.runtime import broker_from_config, run_until_signalled
    from ..aio.supervisor import Supervisor

    if host:
        obj.overrides["node.host"] = host
    if base_port:
        obj.overrides["node.base_port"] = base_port
    if discover:
        obj.overrides["mesh.discover"] = True
    config = obj.config()
    obj.logging(config)
    n = config.workers.count if count is None else count
    b = broker_from_config(obj.home, config, peers, expected_workers=n)
    sup = Supervisor([_worker_argv(obj, modules, caps) for _ in range(n)])
    tasks: list[asyncio.Task[None]] = []

    async def ready() -> None:
        await sup.wait_registered(lambda: int(b.stats()["workers"]))
        _write_ready(ready_file, {"node": b.node_id, "endpoints": b.endpoints,
                                  "workers": b.worker_endpoint, "pid": os.getpid(),
                                  "worker_pids": sup.pids()})

    async def start() -> None:
        await b.start()
        sup.start(asyncio.get_running_loop())
        tasks.append(asyncio.get_running_loop().create_task(ready()))

    async def stop() -> None:
        for t in tasks:
            t.cancel()
        await sup.stop()
        await b.stop()

    asyncio.run(run_until_signalled(start, stop, b.wait_stopped))


# ---------------------------------------------------------------- client
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
        except json.JSONDecodeError:
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


@cli.command(context_settings={"ignore_unknown_options": False})
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


@cli.command("map")
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


@cli.command()
@click.argument("peer")
@click.option("--allocate", type=float, metavar="MB_PER_S",
              help="Set the bandwidth budget of the link to PEER (0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def qos(obj: Obj, peer: str, allocate: float | None, as_json: bool, broker_addr: str | None,
        server_key: str | None) -> None:
    """QoS of the link to neighbour PEER: latency, jitter, loss, bandwidth, health."""
    m = _query(obj, broker_addr, server_key, lambda c: c.qos(peer, allocate))
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    if "error" in m:
        _fail(f"{peer}: {m['error']}")
    click.echo(f"{peer}: health {m['health_score']}/100  latency {m['latency_ms']} ms"
               f"  jitter {m['jitter_ms']} ms  loss {m['packet_loss'] * 100:.1f}%"
               f"  sent {m['bandwidth_mb_s']} MB/s"
               f"  allocation {m['allocation_mb_s'] or 'none'}")
    if m.get("queued_by_class"):
        click.echo("  waiting for bandwidth: " + ", ".join(
            f"{k}={v}" for k, v in m["queued_by_class"].items()))


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest", metavar="NODE:PATH")
@click.option("--chunk", type=int, default=256 * 1024, show_default=True,
              help="Bytes per chunk.")
@_client_options
@click.pass_obj
def cp(obj: Obj, source: Path, dest: str, chunk: int, broker_addr: str | None,
       server_key: str | None) -> None:
    """Copy SOURCE to NODE:PATH (under that node's fs_root): chunked on the low
    class, throttled by policy, resumed after a broken link, checksummed."""
    from ..aio.runtime import async_client_for

    node, colon, path = dest.partition(":")
    if not colon or not node or not path:
        raise click.BadParameter("must be NODE:PATH", param_hint="DEST")
    config = obj.config()
    obj.logging(config)
    size = source.stat().st_size

    async def go() -> Any:
        async with async_client_for(obj.home, config, broker_addr, server_key) as c:
            with click.progressbar(length=size, label=f"{source.name} -> {dest}",
                                   file=sys.stderr) as bar:
                done = [0]

                def progress(have: int, total: int) -> None:
                    bar.update(have - done[0])
                    done[0] = have

                return await c.copy_file(str(source), node, path, chunk_size=chunk,
                                         on_progress=progress)

    r = asyncio.run(go())
    click.echo(f"copied {r.size} bytes to {r.node}:{r.path} in {r.seconds:.2f} s"
               f" ({r.size / max(r.seconds, 1e-9) / 1e6:.2f} MB/s), sha256 {r.sha256}"
               + (f", resumed from byte {r.resumed_from}" if r.resumed_from else "")
               + (f", {r.attempts} attempts" if r.attempts > 1 else ""))


@cli.command()
@click.argument("job_id")
@_client_options
@click.pass_obj
def cancel(obj: Obj, job_id: str, broker_addr: str | None, server_key: str | None) -> None:
    """Cancel job JOB_ID (submitted through this broker) wherever it runs."""
    ok = _query(obj, broker_addr, server_key, lambda c: c.cancel_remote(job_id))
    if not ok:
        _fail(f"no job '{job_id}' in progress on this broker")
    click.echo(f"cancelled {job_id}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def stats(obj: Obj, as_json: bool, broker_addr: str | None, server_key: str | None) -> None:
    """Show the broker's counters: jobs, workers, errors."""
    from ..aio.runtime import async_client_for

    config = obj.config()
    obj.logging(config)

    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with async_client_for(obj.home, config, broker_addr, server_key) as c:
            return await c.stats(), await c.workers()

    s, workers = asyncio.run(go())
    if as_json:
        click.echo(json.dumps({"stats": s, "workers": workers}, indent=2))
        return
    click.echo(f"node {s['node']}  up {s['uptime']:.0f}s")
    for k in ("workers", "slots", "running", "queued", "jobs_received", "jobs_completed",
              "jobs_failed", "jobs_timed_out", "jobs_cancelled", "workers_lost", "malformed"):
        click.echo(f"  {k:<16} {s.get(k)}")
    if s.get("errors"):
        click.echo("  errors:  " + ", ".join(f"{k}={v}" for k, v in sorted(s["errors"].items())))
    if s.get("peers"):
        click.echo(f"  peers    {', '.join(s['peers'])}  relayed {s.get('relayed', 0)}"
                   f"  forwarded {s.get('forwarded', 0)}")
    click.echo(f"  qos      refused {s.get('qos_refused', 0)}  dropped (link down)"
               f" {s.get('qos_dropped_link_down', 0)}")
    for peer, queues in (s.get("link_queues") or {}).items():
        click.echo(f"  queued to {peer}: " + ", ".join(f"{k}={v}" for k, v in queues.items()))
    for name, b in (s.get("send_backlog") or {}).items():
        if b:
            click.echo(f"  send backlog {name}: {b}")
    for w in workers:
        click.echo(f"  worker {w['name']:<24} pid {w['pid']:<7} running {w['running']}/"
                   f"{w['slots']}  done {w['done']}  tools {len(w['tools'])}")


# ------------------------------------------------------------------ mesh
def _query(obj: Obj, broker_addr: str | None, server_key: str | None,
           fn: Any) -> Any:
    from ..aio.runtime import async_client_for

    config = obj.config()
    obj.logging(config)

    async def go() -> Any:
        async with async_client_for(obj.home, config, broker_addr, server_key) as c:
            return await fn(c)

    return asyncio.run(go())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def peers(obj: Obj, as_json: bool, broker_addr: str | None, server_key: str | None) -> None:
    """List this broker's peer links: state, RTT, traffic, last error."""
    links = _query(obj, broker_addr, server_key, lambda c: c.peers())
    if as_json:
        click.echo(json.dumps(links, indent=2))
        return
    if not links:
        click.echo("no peer links")
    for p in links:
        rtt = "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.2f} ms"
        err = f"  ({p['last_error']})" if p["last_error"] else ""
        click.echo(f"{p['node']:<20} {p['state']:<10} {p['address']:<22} rtt {rtt:<10}"
                   f" sent {p['sent']} recv {p['received']}{err}")


def _dot(graph: dict[str, Any]) -> str:
    lines = ["graph operone {", '  node [fontname="Helvetica"];']
    for n in graph["nodes"]:
        attrs = [f'label="{n["id"]}\\n{len(n["tools"])} tools, {n["workers"]} workers"']
        if n.get("kind") == "ssh":
            attrs.append("shape=box")
        if n.get("local"):
            attrs.append("style=bold")
        if not n.get("reachable", True):
            attrs.append("color=gray")
        lines.append(f'  "{n["id"]}" [{", ".join(attrs)}];')
    for e in graph["edges"]:
        lines.append(f'  "{e["source"]}" -- "{e["target"]}" [label="{e["latency"]:.2f} ms"];')
    lines.append("}")
    return "\n".join(lines)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json", "dot"]), default="table")
@_client_options
@click.pass_obj
def topology(obj: Obj, fmt: str, broker_addr: str | None, server_key: str | None) -> None:
    """Show the mesh as this broker sees it (table, JSON, or Graphviz DOT)."""
    async def both(c: Any) -> tuple[Any, Any]:
        return await c.topology(), await c.network_stats()

    graph, net = _query(obj, broker_addr, server_key, both)
    if fmt == "json":
        click.echo(json.dumps({"graph": graph, "stats": net}, indent=2))
        return
    if fmt == "dot":
        click.echo(_dot(graph))
        return
    click.echo(f"{net['total_nodes']} reachable nodes ({net['known_nodes']} known),"
               f" {net['direct_connections']} direct links, diameter"
               f" {net['network_diameter']} hops, average latency {net['average_latency']} ms,"
               f" partitions {net['partitions']}")
    for n in sorted(graph["nodes"], key=lambda n: n["id"]):
        mark = "*" if n.get("local") else " "
        state = "" if n.get("reachable", True) else "  (unreachable)"
        click.echo(f"{mark} {n['id']:<20} {n.get('kind', 'broker'):<7} workers {n['workers']:<3}"
                   f" load {n['load']:<5} tools {','.join(n['tools'][:6])}"
                   f"{'...' if len(n['tools']) > 6 else ''}{state}")
    for e in graph["edges"]:
        click.echo(f"  {e['source']} -- {e['target']}  {e['latency']:.2f} ms")


@cli.command()
@click.argument("dest")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
@click.pass_obj
def route(obj: Obj, dest: str, as_json: bool, broker_addr: str | None,
          server_key: str | None) -> None:
    """Show the route to node DEST: path, hops, latency."""
    r = _query(obj, broker_addr, server_key, lambda c: c.route(dest))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    if not r.get("reachable"):
        _fail(f"no route to '{dest}'" + (" (known but unreachable)" if r.get("known") else ""))
    click.echo(" -> ".join(r["path"]) + f"   ({r['hops']} hops, {r['total_latency']} ms)")


@cli.command()
@click.argument("peer", metavar="NODE@HOST:PORT")
@click.option("--wait", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the link to come up (0: do not wait).")
@_client_options
@click.pass_obj
def connect(obj: Obj, peer: str, wait: float, broker_addr: str | None,
            server_key: str | None) -> None:
    """Tell the running broker to link to another broker."""
    from ..aio.broker import PeerAddress

    addr = PeerAddress.parse(peer)

    async def go(c: Any) -> dict[str, Any]:
        await c.connect_peer(addr.node, addr.host, addr.port)
        deadline = time.monotonic() + wait
        while True:
            links: dict[str, dict[str, Any]] = {p["node"]: p for p in await c.peers()}
            p = links.get(addr.node)
            if p is not None and p["state"] == "up":
                return p
            if time.monotonic() >= deadline:
                return p or {"node": addr.node, "state": "down", "last_error": "no answer"}
            await asyncio.sleep(0.1)

    p = _query(obj, broker_addr, server_key, go)
    if p["state"] != "up" and wait > 0:
        _fail(f"link to '{addr.node}' is {p['state']}: {p.get('last_error') or 'no answer'}")
    click.echo(f"{addr.node}: {p['state']}")


@cli.command()
@click.argument("message")
@click.option("--type", "mtype", default="notification", show_default=True)
@_client_options
@click.pass_obj
def broadcast(obj: Obj, message: str, mtype: str, broker_addr: str | None,
              server_key: str | None) -> None:
    """Send MESSAGE (JSON or text) to every broker of the mesh."""
    try:
        data: Any = json.loads(message)
    except json.JSONDecodeError:
        data = message
    n = _query(obj, broker_addr, server_key,
               lambda c: c.broadcast({"type": mtype, "data": data}))
    click.echo(f"broadcast sent to {n} neighbour(s); every reachable broker gets it once")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="[USER@]HOST[:PORT]|LEGACY-NAME")
@click.argument("command", nargs=-1, required=True)
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="Private key (default: ssh.key_file, else agent / ~/.ssh).")
@click.option("--password-env", metavar="VAR", help="Read the password from this variable.")
@click.option("--known-hosts", type=click.Path(dir_okay=False),
              help="known_hosts file (default: ssh.known_hosts, else ~/.ssh/known_hosts).")
@click.option("--accept-new-host", is_flag=True, help="Accept and remember an unknown host key.")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.pass_obj
def ssh(obj: Obj, target: str, command: tuple[str, ...], key_file: str | None,
        password_env: str | None, known_hosts: str | None, accept_new_host: bool,
        timeout: float) -> None:
    """Run COMMAND on a host over SSH (a one-off, no mesh):
    operone ssh admin@10.0.0.5 -- uname -a"""
    from ..config import parse_ssh_host
    from ..ssh import SSHClient

    config = obj.config()
    user: str | None = None
    host, port = target, 22
    for entry in config.ssh.hosts:  # a configured legacy host by name
        name, u, h, hport = parse_ssh_host(entry)
        if name == target:
            user, host, port = u, h, hport
            break
    else:
        if "@" in target:
            user, _, target = target.rpartition("@")
        h, colon, ptext = target.rpartition(":")
        if colon and ptext.isdigit():
            host, port = h.strip("[]"), int(ptext)
        else:
            host = target
    password = os.environ.get(password_env) if password_env else None
    key = key_file or config.ssh.key_file
    kh = known_hosts or config.ssh.known_hosts
    with SSHClient(host, port, user, private_key_path=os.path.expanduser(key) if key else None,
                   password=password,
                   known_hosts=Path(kh).expanduser() if kh else None,
                   accept_unknown_host=accept_new_host or config.ssh.accept_unknown_host,
                   command_timeout=timeout) as client:
        r = client.execute(list(command))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.exit_status)


@cli.command()
@click.option("--timeout", type=float, default=3.0, show_default=True,
              help="Seconds to listen.")
@click.option("--all-clusters", is_flag=True, help="Also list other clusters' brokers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def discover(obj: Obj, timeout: float, all_clusters: bool, as_json: bool) -> None:
    """List the brokers zeroconf finds on the network now, and whether each
    one's key is trusted here."""
    from ..aio.discovery import browse
    from ..security.keys import TrustStore

    config = obj.config()
    obj.logging(config)
    peers = asyncio.run(browse(timeout, cluster=None if all_clusters else config.node.cluster))
    store = TrustStore(obj.home.trust_dir)
    rows = [{"node": p.node, "cluster": p.cluster, "address": p.address,
             "fingerprint": p.fingerprint,
             "trusted": store.name_of(p.public_key.encode("ascii")) == p.node}
            for p in peers]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no brokers found")
    for r in rows:
        state = "trusted" if r["trusted"] else "untrusted (operone keys accept ...)"
        click.echo(f"{r['node']:<20} {r['address']:<30} {r['cluster']:<12} {r['fingerprint']}"
                   f"  {state}")


# ------------------------------------------------------------------ keys
@cli.group()
def keys() -> None:
    """Manage the Curve keys this node trusts."""


@keys.command("list")
@click.pass_obj
def keys_list(obj: Obj) -> None:
    """List trusted and pending keys."""
    from ..security.keys import TrustStore

    for k in TrustStore(obj.home.trust_dir).list():
        src = f"  ({k.source})" if k.source else ""
        kinds = ",".join([*(["node"] if k.node else []), *([k.role] if k.role else [])])
        limits = "".join([f" tools={','.join(k.tools)}" if k.tools else "",
                          f" nodes={','.join(k.nodes)}" if k.nodes else "",
                          " signed" if k.signing_key else ""])
        click.echo(f"{k.status:<8} {k.name:<24} {k.fingerprint}  {k.public_key.decode()}"
                   f"  [{kinds or '-'}{limits}]{src}")


@keys.command("accept")
@click.argument("name")
@click.argument("key", required=False)
@click.option("--node", "as_node", is_flag=True,
              help="Trust it as a node: it may join the mesh under NAME as its node id.")
@click.option("--client", "as_client", is_flag=True,
              help="Trust it as a client (with --role; default role: submit).")
@click.option("--role", type=click.Choice(["operator", "submit"]),
              help="A client's role: operator (state-changing queries, cancel any job,"
                   " broadcast) or submit (its own jobs, read-only queries).")
@click.option("--tools", metavar="T1,T2", help="Tools the client may run (fs.* = a prefix).")
@click.option("--nodes", metavar="N1,N2", help="Nodes the client's jobs may run on.")
@click.option("--signing-key", metavar="HEX",
              help="The node's Ed25519 signing key (operone keys show prints it).")
@click.pass_obj
def keys_accept(obj: Obj, name: str, key: str | None, as_node: bool, as_client: bool,
                role: str | None, tools: str | None, nodes: str | None,
                signing_key: str | None) -> None:
    """Trust KEY (z85 text or a .key file) under NAME; without KEY, accept the
    pending key NAME.  Without --node or --client the key is both a node and
    an operator client (as every key was before roles; docs/security.md)."""
    from ..security.keys import TrustStore, parse_public_key

    store = TrustStore(obj.home.trust_dir)
    if key is None:
        pending = [k for k in store.list() if k.status == "pending" and k.name == name]
        if not pending:
            raise ConfigError(f"no pending key named '{name}'; give the key to accept")
        pub = pending[0].public_key
    else:
        pub = parse_public_key(Path(key) if os.path.exists(key) else key)
    kinds: dict[str, Any] = {}
    if as_node or as_client:
        kinds["node"] = as_node
        kinds["role"] = (role or "submit") if as_client else None
    elif role is not None:
        kinds["role"] = role
    if tools is not None:
        kinds["tools"] = tuple(t.strip() for t in tools.split(",") if t.strip())
    if nodes is not None:
        kinds["nodes"] = tuple(n.strip() for n in nodes.split(",") if n.strip())
    if signing_key is not None:
        kinds["signing_key"] = signing_key
    known = store.trusted_as(pub)
    k = store.accept(name, pub, **kinds)
    if known is not None and known.name != name:
        click.echo(f"warning: this key ({known.fingerprint}) is already trusted as"
                   f" '{known.name}'; it was not added again as '{name}' (to rename it:"
                   f" operone keys reject {known.name}, then accept it again)", err=True)
        return
    what = ", ".join([*(["node"] if k.node else []),
                      *([f"client ({k.role})"] if k.role else [])]) or "nothing"
    click.echo(f"trusted {k.name} {k.fingerprint} as {what}")


@keys.command("reject")
@click.argument("name_or_fingerprint")
@click.pass_obj
def keys_reject(obj: Obj, name_or_fingerprint: str) -> None:
    """Stop trusting a key (by name or fingerprint)."""
    from ..security.keys import TrustStore

    if not TrustStore(obj.home.trust_dir).reject(name_or_fingerprint):
        raise ConfigError(f"no key named or with fingerprint '{name_or_fingerprint}'")
    click.echo(f"rejected {name_or_fingerprint}")


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def keys_show(obj: Obj, as_json: bool) -> None:
    """Print this node's public key, its fingerprint, and the command that
    trusts it on another node (give them to that node's operator)."""
    from ..aio.runtime import node_keys
    from ..protocol.signature import Signer
    from ..security.keys import load_signing_seed

    node_id = obj.config().node.id
    kp = node_keys(obj.home)
    key = kp.public.decode()
    signing = Signer.from_seed(load_signing_seed(obj.home.node_signing)).public_hex
    # Z85 has no single quote, so '...' quotes every key for a POSIX shell, and
    # "--" keeps a key that starts with '-' from being read as an option.
    command = f"operone keys accept --node --signing-key {signing} -- {node_id} '{key}'"
    if as_json:
        click.echo(json.dumps({"node": node_id, "public_key": key,
                               "fingerprint": kp.fingerprint, "signing_key": signing,
                               "accept_command": command}))
        return
    click.echo(key)
    click.echo(f"fingerprint {kp.fingerprint}")
    click.echo(f"signing key {signing}")
    click.echo(f"to trust it on another node: {command}")


# ----------------------------------------------------------------- token
@cli.group()
def token() -> None:
    """Tokens (JWT) for peer links when security.require_token is on."""


@token.command("create")
@click.option("--ttl", type=float, help="Lifetime in seconds (default: security.token_ttl).")
@click.option("--node", "subject", metavar="NODE",
              help="Node the token is for (default: this node); its key must be trusted here.")
@click.pass_obj
def token_create(obj: Obj, ttl: float | None, subject: str | None) -> None:
    """Print a token signed with security.jwt_secret, for the cluster, bound to
    the node's Curve key (a leaked token is useless without its secret key)."""
    from ..aio.runtime import node_keys
    from ..security.keys import TrustStore
    from ..security.tokens import generate_jwt

    config = obj.config()
    secret = config.security.jwt_secret
    if secret is None:
        raise ConfigError("no security.jwt_secret configured: cannot create tokens")
    if ttl is not None and not ttl > 0:
        raise ConfigError(f"--ttl must be a positive number of seconds, not {ttl:g}")
    node_id = subject or config.node.id
    if node_id == config.node.id:
        key = node_keys(obj.home).public
    else:
        found = TrustStore(obj.home.trust_dir).key_of(node_id)
        if found is None:
            raise ConfigError(f"no trusted key for node '{node_id}': a token is bound to the"
                              " node's key, so accept it first (operone keys accept)")
        key = found
    lifetime = config.security.token_ttl if ttl is None else ttl
    click.echo(generate_jwt(secret, node_id, config.node.cluster, ttl=lifetime, curve_key=key))
    click.echo(f"token for '{node_id}' in cluster '{config.node.cluster}', valid"
               f" {lifetime:g} s", err=True)


def main() -> None:
    """Entry point of the ``operone`` console script."""
    cli(prog_name="operone")


from .dashboard import dashboard as _dashboard  # noqa: E402, I001 (uses the helpers above)
cli.add_command(_dashboard)
