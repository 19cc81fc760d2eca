"""``operone broker|worker|node start``: run this node's processes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from ._common import Obj, _write_ready

__all__ = ["broker", "node", "worker"]


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
@click.group()
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
