"""Tools served inside the broker's own process (``Broker.register_tool``).

The original package answered ``tool:remote-request`` in the peer process
itself; DESIGN.md keeps that for light tools.  Here such tools sit behind a
:class:`~operone_zmq.core.worker.WorkerCore` like any worker, so the broker
core places, times out and cancels their jobs exactly as it does for worker
processes; only the transport differs: frames are handed over in memory
instead of through a socket.  Cheap ``inline`` tools run at once, async
tools as tasks, other sync tools in the loop's default thread pool (heavy
tools belong in worker processes).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from typing import Any

from ..core.worker import JobStart, WorkerCore
from ..errors import JobError, ToolNotFound
from ..tools import ToolContext, ToolRegistry, ToolsConfig

__all__ = ["INPROC_RID", "InprocWorker"]

#: Routing id of the in-process worker on the broker's worker socket (a zero
#: first byte: no socket peer can ever have it).
INPROC_RID = b"\x00inproc"


class InprocWorker:
    """A worker without a socket: ``deliver`` takes the broker's frames, and
    frames for the broker go to ``to_broker``."""

    def __init__(self, name: str, registry: ToolRegistry,
                 to_broker: Callable[[list[bytes]], None], *,
                 heartbeat_interval: float = 1.0, liveness: int = 3) -> None:
        self.registry = registry
        self._to_broker = to_broker
        self._config = ToolsConfig()
        self._tasks: dict[str, asyncio.Future[Any]] = {}
        now = time.monotonic()
        infos = registry.infos()
        self.core = WorkerCore(name, infos, slots=1024, pid=os.getpid(),
                               heartbeat_interval=heartbeat_interval, liveness=liveness,
                               now=now)
        self.core.start(now)

    def flush(self) -> None:
        """Hand what the worker core has for the broker over."""
        out = self.core.out
        while out:
            frames = out.pop(0)
            self._to_broker([INPROC_RID, *frames])

    def deliver(self, frames: list[bytes]) -> None:
        """A message from the broker (without the routing id)."""
        now = time.monotonic()
        action = self.core.on_broker(frames, now)
        if isinstance(action, JobStart):
            self._start(action, now)
        elif isinstance(action, str):
            fut = self._tasks.pop(action, None)
            if fut is not None:
                fut.cancel()

    def tick(self) -> None:
        """Heartbeats and per-job deadlines."""
        stop, lost = self.core.tick(time.monotonic())
        for jid in stop:
            fut = self._tasks.pop(jid, None)
            if fut is not None:
                fut.cancel()
        if lost:
            self.core.start(time.monotonic())

    def _start(self, job: JobStart, now: float) -> None:
        core = self.core
        try:
            spec = self.registry.get(job.tool)
        except ToolNotFound as exc:
            core.fail(job.id, exc, now)
            return
        ctx = ToolContext(job_id=job.id, node=core.node, config=self._config,
                          deadline=job.deadline)
        try:
            call = spec.prepare(job.args, ctx)
        except JobError as exc:
            core.fail(job.id, exc, now)
            return
        if spec.is_async:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_task(call())
        elif spec.inline:
            try:
                value = call()
            except Exception as exc:
                core.fail(job.id, exc, now)
            else:
                core.done(job.id, value, now)
            return
        else:
            fut = asyncio.get_running_loop().run_in_executor(None, call)
        self._tasks[job.id] = fut
        fut.add_done_callback(functools.partial(self._finished, job.id))

    def _finished(self, jid: str, fut: asyncio.Future[Any]) -> None:
        self._tasks.pop(jid, None)
        if fut.cancelled():
            return
        now = time.monotonic()
        exc = fut.exception()
        if exc is not None:
            self.core.fail(jid, exc, now)
        else:
            self.core.done(jid, fut.result(), now)
        self.flush()

    def close(self) -> None:
        """Stop whatever runs."""
        for fut in self._tasks.values():
            fut.cancel()
        self._tasks.clear()
