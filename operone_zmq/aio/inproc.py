"""Tools served inside the broker's own process (``Broker.register_tool``).

The original package answered ``tool:remote-request`` in the peer process
itself; DESIGN.md keeps that for light tools.  The broker core serves them as
one *virtual worker* (:meth:`~operone_zmq.core.broker.BrokerCore.add_virtual_worker`),
so it places, queues, times out and cancels their jobs exactly as it does for
worker processes, but no frames are built or parsed for them: the core hands
over the decoded request and takes the tool's value back, packing the
RESULT once.  This module runs the tools: cheap ``inline`` tools at once
(after the core call that started them returns), async tools as tasks, other
sync tools in the loop's default thread pool (heavy tools belong in worker
processes).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import JobError, ToolFailed, ToolNotFound
from ..tools import ToolContext, ToolRegistry, ToolsConfig

__all__ = ["InprocTools"]

#: done(job id, value, error or None, duration in seconds)
Done = Callable[[str, Any, "JobError | None", float], None]


class InprocTools:
    """Runs the jobs the core starts on its virtual worker; reports each
    outcome to ``done`` (which hands it to the core)."""

    def __init__(self, node: str, registry: ToolRegistry, done: Done) -> None:
        self.registry = registry
        self._node = node
        self._done = done
        self._config = ToolsConfig()
        #: Handed to tools that take no ctx (prepare() ignores it for them).
        self._no_ctx = ToolContext(job_id="", node=node, config=self._config)
        self._tasks: dict[str, asyncio.Future[Any]] = {}
        #: Jobs the core started and that have not been run yet (bounded by the
        #: virtual worker's slots: the core starts no more than that at once).
        self._due: deque[tuple[str, str, dict[str, Any], float]] = deque()
        self._stopped: set[str] = set()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(i.name for i in self.registry.infos())

    # ----------------------------------------------------- the core's callbacks
    def run(self, jid: str, tool: str, args: dict[str, Any], deadline: float,
            cls: int) -> None:
        """The core starts a job (runs later, in :meth:`run_due`: no re-entry)."""
        self._due.append((jid, tool, args, deadline))

    def stop(self, jid: str) -> None:
        """The core gave up on a job (timeout, cancel): stop it if it runs."""
        fut = self._tasks.pop(jid, None)
        if fut is not None:
            fut.cancel()
        elif self._due:
            self._stopped.add(jid)

    # --------------------------------------------------------------- running
    @property
    def due(self) -> bool:
        """Whether jobs wait for :meth:`run_due`."""
        return bool(self._due)

    def run_due(self) -> None:
        """Start every job the core has handed over (inline tools finish here)."""
        due = self._due
        stopped = self._stopped
        while due:
            jid, tool, args, deadline = due.popleft()
            if stopped and jid in stopped:
                stopped.discard(jid)
                continue
            self._start(jid, tool, args, deadline)
        stopped.clear()

    def _start(self, jid: str, tool: str, args: dict[str, Any], deadline: float) -> None:
        started = time.monotonic()
        try:
            spec = self.registry.get(tool)
        except ToolNotFound as missing:
            self._done(jid, None, missing, 0.0)
            return
        # A tool that takes no ctx gets the shared one (as the worker does):
        # a ToolContext, and its threading.Event, per job cost more than echo.
        ctx = self._no_ctx if not spec.wants_ctx else ToolContext(
            job_id=jid, node=self._node, config=self._config, deadline=deadline)
        try:
            call = spec.prepare(args, ctx)
        except JobError as refused:
            self._done(jid, None, refused, 0.0)
            return
        if spec.is_async:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_task(call())
        elif spec.inline:
            try:
                value = call()
            except Exception as exc:
                self._done(jid, None, self._error(jid, exc), time.monotonic() - started)
            else:
                self._done(jid, value, None, time.monotonic() - started)
            return
        else:
            fut = asyncio.get_running_loop().run_in_executor(None, call)
        self._tasks[jid] = fut
        fut.add_done_callback(functools.partial(self._finished, jid, started))

    def _error(self, jid: str, exc: BaseException) -> JobError:
        if isinstance(exc, JobError):
            return exc
        return ToolFailed(f"{type(exc).__name__}: {exc}", job_id=jid,
                          remote_type=type(exc).__name__, node=self._node)

    def _finished(self, jid: str, started: float, fut: asyncio.Future[Any]) -> None:
        self._tasks.pop(jid, None)
        if fut.cancelled():
            return
        duration = time.monotonic() - started
        exc = fut.exception()
        if exc is not None:
            self._done(jid, None, self._error(jid, exc), duration)
        else:
            self._done(jid, fut.result(), None, duration)

    def close(self) -> None:
        """Stop whatever runs."""
        for fut in self._tasks.values():
            fut.cancel()
        self._tasks.clear()
        self._due.clear()
