"""Supervisor: the worker processes of ``operone node start``, kept running.

A worker must never outlive its node: an orphan keeps its slot's tools
registered nowhere, logs ``broker_lost`` forever and re-dials the next broker.
Two guards, because either alone has a gap:

* On Linux the child asks the kernel for ``SIGTERM`` when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``, :func:`die_with_parent`), at worker start-up
  rather than in a ``preexec_fn`` (which is unsafe in a process with threads,
  as the broker is).  The parent may die between ``fork`` and that call, so the
  child then checks ``getppid()`` against the pid it was given and leaves if
  they differ.
* Everywhere, the worker compares ``getppid()`` with that pid on each timer
  tick (:class:`~operone_zmq.aio.worker.Worker` ``parent_pid``) and stops when
  its parent is gone: the only guard on macOS and Windows.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so the
supervisor spawns from the event loop's thread, which lives as long as the
node.

With ``output``, the workers' stdout and stderr are copied line by line to
it (a detached node's rotating log), by one reader thread per worker.

Worker names are left to the worker (``<node>.w<pid>``), so each process
incarnation has its own ZeroMQ identity and a stray from an older node can
never take over a new worker's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO

import structlog

__all__ = ["Supervisor", "die_with_parent", "parent_alive"]

log = structlog.get_logger("operone.supervisor")

_PR_SET_PDEATHSIG = 1


def parent_alive(parent_pid: int) -> bool:
    """Whether the process that started us is still our parent."""
    return os.getppid() == parent_pid


def die_with_parent(parent_pid: int) -> bool:
    """Arrange to get SIGTERM when our parent dies (Linux); return False if the
    parent ``parent_pid`` is already gone (the caller must then exit)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
                log.warning("pdeathsig_failed", errno=ctypes.get_errno())
        except (OSError, AttributeError) as exc:  # pragma: no cover - odd libc
            log.warning("pdeathsig_failed", error=str(exc))
    # After prctl: a parent that died before it will not signal us any more.
    return parent_alive(parent_pid)


def _copy_lines(pipe: IO[bytes], out: Callable[[str], object]) -> None:
    """Copy a worker's output to ``out`` until the worker closes it."""
    with pipe:
        for line in pipe:
            with contextlib.suppress(Exception):  # a full disk must not kill the copier
                out(line.decode("utf-8", "replace"))


class Supervisor:
    """Keeps N worker processes running; restarts one that dies, with backoff."""

    #: Seconds between restarts of one worker slot, doubling to at most 30 s,
    #: so a worker that crashes on start does not spin.
    MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0
    #: A worker that ran this long (s) before dying restarts at MIN_BACKOFF again.
    STABLE_AFTER = 60.0
    #: Seconds between checks that the workers are alive.
    POLL = 0.5
    #: Seconds a worker gets to exit after SIGTERM before it is killed.
    STOP_GRACE = 3.0

    def __init__(self, argvs: list[list[str]],
                 output: Callable[[str], object] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.argvs = argvs
        self.env = env  # the workers' environment; None: this process's
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(argvs)
        self._task: asyncio.Task[None] | None = None
        self._output = output

    def pids(self) -> list[int]:
        """The running workers' pids."""
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def _spawn(self, i: int) -> None:
        out = self._output
        if out is None:
            self.procs[i] = subprocess.Popen(self.argvs[i], env=self.env)
            return
        p = subprocess.Popen(self.argvs[i], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=self.env)
        self.procs[i] = p
        assert p.stdout is not None
        threading.Thread(target=_copy_lines, args=(p.stdout, out), daemon=True,
                         name=f"worker-output-{p.pid}").start()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn every worker (call from the loop's thread: see the module doc)."""
        for i in range(len(self.argvs)):
            self._spawn(i)
        self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        n = len(self.argvs)
        backoff = [self.MIN_BACKOFF] * n
        started = [time.monotonic()] * n
        while True:
            await asyncio.sleep(self.POLL)
            for i, p in enumerate(self.procs):
                if p is None or p.poll() is None:
                    continue
                now = time.monotonic()
                if now - started[i] > self.STABLE_AFTER:
                    backoff[i] = self.MIN_BACKOFF
                log.warning("worker_exited", pid=p.pid, code=p.returncode,
                            restart_in=backoff[i])
                await asyncio.sleep(backoff[i])
                backoff[i] = min(self.MAX_BACKOFF, backoff[i] * 2)
                self._spawn(i)
                started[i] = time.monotonic()

    async def stop(self) -> None:
        """Stop watching, SIGTERM every worker, kill those that do not exit."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM if sys.platform != "win32" else signal.SIGINT)
        deadline = time.monotonic() + self.STOP_GRACE
        for p in self.procs:
            if p is None:
                continue
            try:
                await asyncio.to_thread(p.wait, max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2)

    async def wait_registered(self, registered: Callable[[], int], timeout: float | None = None,
                              ) -> bool:
        """Wait until ``registered()`` (workers the broker knows) reaches the
        number of workers; False after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while registered() < len(self.argvs):
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True
