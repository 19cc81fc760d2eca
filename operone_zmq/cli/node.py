"""``operone broker|worker|node start``: run this node's processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from ._common import Obj, _fail, _self_command, _write_ready

__all__ = ["broker", "logs", "node", "worker"]


@click.group()
def broker() -> None:
    """Run this node's broker."""



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
    from ..aio.runtime import broker_from_config, event_loop_name, run_service, run_until_signalled

    _broker_overrides(obj, host, base_port, discover)
    config = obj.config()
    obj.logging(config)
    b = broker_from_config(obj.home, config, peers)
    run_service(run_until_signalled(
        b.start, b.stop, b.wait_stopped,
        lambda: _write_ready(ready_file, {"node": b.node_id, "endpoints": b.endpoints,
                                          "workers": b.worker_endpoint, "pid": os.getpid(),
                                          "loop": event_loop_name()})))


def _broker_overrides(obj: Obj, host: str | None, base_port: int | None,
                      discover: bool | None) -> None:
    """The broker options of ``broker start`` and ``node start`` as config overrides."""
    if host:
        obj.overrides["node.host"] = host
    if base_port:
        obj.overrides["node.base_port"] = base_port
    if discover:
        obj.overrides["mesh.discover"] = True


# ---------------------------------------------------------------- worker
@click.group()
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
    from ..aio.runtime import event_loop_name, run_service, run_until_signalled, worker_from_config
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
    run_service(run_until_signalled(
        w.start, w.stop, w.wait_stopped,
        lambda: _write_ready(ready_file, {"worker": w.name, "pid": os.getpid(),
                                          "loop": event_loop_name()})))


# ------------------------------------------------------------------ node
@click.group()
def node() -> None:
    """Run a whole node: the broker and its workers."""


def _worker_argv(obj: Obj, modules: tuple[str, ...], caps: tuple[str, ...]) -> list[str]:
    argv = [*_self_command()[0], "--home", str(obj.home.path)]
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


#: Seconds `node start --detach` waits for the node to serve (and its
#: workers to register) before it reports a failure.
DETACH_READY_TIMEOUT = 60.0
#: Exit codes of `node status` (the LSB init-script convention).
STATUS_UP, STATUS_DOWN, STATUS_UNRESPONSIVE = 0, 3, 4


def _detach(obj: Obj, argv: list[str]) -> None:
    """Run ``node start`` (``argv``: its options) as a background process that
    logs to home/log/node.log; return once it serves."""
    from .. import service

    running = service.read_pid_file(obj.home)
    if running is not None:
        _fail(f"node '{running.get('node')}' is already running here (pid {running['pid']});"
              " operone node stop, or operone node status", 1)
    obj.home.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ready = obj.home.run_dir / "node.ready"
    ready.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    log = service.log_path(obj.home)
    out_path = obj.home.log_dir / "node.out"  # what the process prints outside the log
    prefix, env = _self_command()
    cmd = [*prefix, "--home", str(obj.home.path)]
    if obj.log_format:
        cmd += ["--log-format", obj.log_format]
    if obj.log_level:
        cmd += ["--log-level", obj.log_level]
    cmd += ["node", "start", *argv, "--log-file", str(log), "--ready-file", str(ready)]
    kw: dict[str, Any] = {}
    if sys.platform == "win32":  # pragma: no cover - Windows
        kw["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | NEW_PROCESS_GROUP
    else:
        kw["start_new_session"] = True  # not in our terminal's process group: Ctrl-C spares it
    with open(out_path, "ab") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             close_fds=True, env=env, **kw)
    deadline = time.monotonic() + DETACH_READY_TIMEOUT
    while not ready.exists():
        if p.poll() is not None:
            tail = out_path.read_text(errors="replace").strip().splitlines()[-5:]
            _fail(f"the node exited at start (code {p.returncode}):\n  "
                  + "\n  ".join(tail or ["(no output)"]) + f"\n  see {log}", 1)
        if time.monotonic() > deadline:
            _fail(f"the node (pid {p.pid}) did not start within {DETACH_READY_TIMEOUT:g} s;"
                  f" see {log}", 1)
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    ready.unlink(missing_ok=True)
    click.echo(f"node '{info['node']}' started in the background (pid {p.pid}),"
               f" {len(info.get('worker_pids', []))} workers, {', '.join(info['endpoints'][:1])}")
    click.echo(f"  log:  {log}  (operone logs -f)")
    click.echo("  stop: operone node stop")


@node.command("start")
@click.option("--peer", "peers", multiple=True, metavar="NODE@HOST:PORT",
              help="Link to this broker (its key must be trusted as NODE); repeatable.")
@click.option("--discover", is_flag=True, default=None,
              help="Advertise and find brokers with zeroconf (mesh.discover).")
@click.option("--workers", "count", type=click.IntRange(min=0),
              help="Worker processes (default: workers.count).")
@click.option("--tools", "modules", multiple=True, help="Tool module for the workers; repeatable.")
@click.option("--cap", "caps", multiple=True, help="Capability the workers advertise; repeatable.")
@click.option("--host", help="Bind address (overrides node.host).")
@click.option("--port", "base_port", type=click.IntRange(1, 65532),
              help="First class port (overrides node.base_port).")
@click.option("--ready-file", type=click.Path(path_type=Path),
              help="Write a JSON line here once the broker serves and every worker has"
                   " registered (jobs can run).")
@click.option("--detach", is_flag=True,
              help="Run in the background, logging to HOME/log/node.log (rotated by size);"
                   " return once it serves.")
@click.option("--log-file", type=click.Path(path_type=Path), hidden=True,
              help="Log to this file, rotated by size (what --detach uses).")
@click.pass_obj
def node_start(obj: Obj, peers: tuple[str, ...], discover: bool | None, count: int | None,
               modules: tuple[str, ...], caps: tuple[str, ...], host: str | None,
               base_port: int | None, ready_file: Path | None, detach: bool,
               log_file: Path | None) -> None:
    """Start the broker and N worker processes; restart workers that die.

    In the foreground by default (Ctrl-C or SIGTERM stops it); --detach runs
    it in the background (operone node status|stop, operone logs)."""
    from .. import __version__, service
    from ..aio.runtime import broker_from_config, event_loop_name, run_service, run_until_signalled
    from ..aio.supervisor import Supervisor

    if detach:
        argv: list[str] = []
        for p in peers:
            argv += ["--peer", p]
        if discover:
            argv.append("--discover")
        if count is not None:
            argv += ["--workers", str(count)]
        for m in modules:
            argv += ["--tools", m]
        for c in caps:
            argv += ["--cap", c]
        if host:
            argv += ["--host", host]
        if base_port:
            argv += ["--port", str(base_port)]
        obj.config()  # a bad config fails here, in the terminal
        _detach(obj, argv)
        if ready_file is not None:
            _write_ready(ready_file, service.read_pid_file(obj.home) or {})
        return
    _broker_overrides(obj, host, base_port, discover)
    config = obj.config()
    stream = service.RotatingLog(log_file) if log_file is not None else None
    obj.logging(config, stream)
    running = service.read_pid_file(obj.home)
    if running is not None and running["pid"] != os.getpid():
        _fail(f"node '{running.get('node')}' is already running here (pid {running['pid']})")
    n = config.workers.count if count is None else count
    b = broker_from_config(obj.home, config, peers, expected_workers=n)
    sup = Supervisor([_worker_argv(obj, modules, caps) for _ in range(n)],
                     output=stream.write if stream is not None else None,
                     env=_self_command()[1])
    tasks: list[asyncio.Task[None]] = []
    pid = os.getpid()

    def describe() -> dict[str, Any]:
        return {"node": b.node_id, "endpoints": b.endpoints, "workers": b.worker_endpoint,
                "pid": pid, "worker_pids": sup.pids(), "started": started[0],
                "version": __version__, "host": config.node.host,
                "base_port": config.node.base_port, "home": str(obj.home.path),
                "log": str(log_file) if log_file else None, "loop": event_loop_name()}

    started = [time.time()]

    async def ready() -> None:
        await sup.wait_registered(lambda: int(b.stats()["workers"]))
        service.write_pid_file(obj.home, describe())
        _write_ready(ready_file, describe())

    async def start() -> None:
        await b.start()
        started[0] = time.time()
        service.write_pid_file(obj.home, describe())
        sup.start(asyncio.get_running_loop())
        tasks.append(asyncio.get_running_loop().create_task(ready()))

    async def stop() -> None:
        for t in tasks:
            t.cancel()
        await sup.stop()
        await b.stop()
        service.remove_pid_file(obj.home, pid)

    try:
        run_service(run_until_signalled(start, stop, b.wait_stopped))
    finally:
        service.remove_pid_file(obj.home, pid)
        if stream is not None:
            stream.close()


@node.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds to wait for a graceful stop before killing it.")
@click.pass_obj
def node_stop(obj: Obj, timeout: float) -> None:
    """Stop the node running from this home (by its PID file): SIGTERM, then
    SIGKILL after --timeout.  Exit 0 when it is stopped (or was not running)."""
    from .. import service

    info = service.read_pid_file(obj.home)
    if info is None:
        click.echo("node is not running")
        return
    how = service.terminate(info["pid"], timeout)
    if how == "killed":
        service.remove_pid_file(obj.home, info["pid"])
        click.echo(f"node '{info.get('node')}' (pid {info['pid']}) did not stop within"
                   f" {timeout:g} s: killed")
        return
    click.echo(f"stopped node '{info.get('node')}' (pid {info['pid']})")


@node.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def node_status(obj: Obj, as_json: bool) -> None:
    """Whether the node of this home runs: PID, uptime, workers, ports, version.
    Exit 0 up, 3 not running, 4 running but its broker does not answer."""
    from .. import service
    from ..aio.runtime import async_client_for
    from ._common import _age

    info = service.read_pid_file(obj.home)
    if info is None:
        if as_json:
            click.echo(json.dumps({"state": "down"}))
        else:
            click.echo("node is not running (start it: operone node start --detach)")
        sys.exit(STATUS_DOWN)
    config = obj.config()
    stats: dict[str, Any] | None = None
    error = None

    async def ask() -> dict[str, Any]:
        async with async_client_for(obj.home, config, None, None) as c:
            s: dict[str, Any] = await c.query("stats", timeout=5.0)
            return s

    try:
        stats = asyncio.run(ask())
    except Exception as exc:  # the process is there, its broker does not answer
        error = str(exc)
    state = "up" if stats is not None else "unresponsive"
    out = {"state": state, "pid": info["pid"], "node": info.get("node"),
           "uptime": stats.get("uptime") if stats else round(time.time() - info["started"], 3),
           "workers": stats.get("workers") if stats else None,
           "worker_pids": info.get("worker_pids"), "endpoints": info.get("endpoints"),
           "version": info.get("version"), "loop": info.get("loop"), "log": info.get("log"),
           "error": error}
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"node '{out['node']}' is {state}: pid {out['pid']}, up"
                   f" {_age(time.time() - float(out['uptime'] or 0))}, workers"
                   f" {out['workers'] if out['workers'] is not None else '?'}, version"
                   f" {out['version']}" + (f", on {out['loop']}" if out["loop"] else ""))
        click.echo(f"  ports: {', '.join(out['endpoints'] or [])}")
        if out["log"]:
            click.echo(f"  log:   {out['log']}")
        if error:
            click.echo(f"  broker does not answer: {error}")
    sys.exit(STATUS_UP if stats is not None else STATUS_UNRESPONSIVE)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing lines as they are written.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True,
              help="Lines of the end of the log to print first.")
@click.pass_obj
def logs(obj: Obj, follow: bool, lines: int) -> None:
    """Print the log of the node started with --detach (HOME/log/node.log)."""
    from .. import service

    path = service.log_path(obj.home)
    if not path.exists():
        _fail(f"no log at {path} (a node started with --detach logs there; in the"
              " foreground it logs to the terminal)")
    with open(path, "rb") as f:
        tail = f.read().splitlines()[-lines:] if lines else []
        pos = f.tell()
    for line in tail:
        click.echo(line.decode("utf-8", "replace"))
    if not follow:
        return
    ino = path.stat().st_ino
    try:
        while True:
            time.sleep(0.2)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_ino != ino or st.st_size < pos:  # rotated: read the new file
                ino, pos = st.st_ino, 0
            if st.st_size > pos:
                with open(path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
    except KeyboardInterrupt:
        return
