"""Helpers of ``scripts/bench.py``: child processes, and nodes of a mesh on 127.0.0.1.

:class:`Child` is a child process with its output in a log file, always
stopped (SIGTERM, then SIGKILL).  :class:`BenchNode` is one node's home with
its broker and workers as real ``operone ... start`` processes;
:class:`BenchMesh` is several of them that trust each other's node keys, as
``tests/helpers.py``'s ``MeshOfNodes`` (which this does not import, so the
benchmark does not depend on the test suite) but with the environment chosen
by the benchmark (default heartbeats unless told otherwise) and asyncio waits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from operone_zmq.aio.sockets import free_base_port

#: Seconds any child process may take to say it is ready.
START_TIMEOUT = 30.0

#: What each daemon that wrote a ready file imported: its ``"compiled"``
#: count (0: pure Python), by child name; ``bench.py`` prints them, so a
#: figure said to be of the compiled build is one.
DAEMON_BUILDS: dict[str, int] = {}


def operone_argv(*args: str) -> list[str]:
    """``python -P -m operone_zmq ARGS``.  ``-m`` alone puts the working
    directory first on ``sys.path``: run from a checkout, a daemon would
    import its pure-Python ``operone_zmq`` while this process imports a
    compiled copy on ``PYTHONPATH``.  ``-P`` (3.11+) leaves it off, and
    :func:`child_env` puts this process's own ``operone_zmq`` first."""
    return [sys.executable, "-P", "-m", "operone_zmq", *args]


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the directory this process
    imported ``operone_zmq`` from first on ``PYTHONPATH``."""
    import operone_zmq

    out = dict(os.environ if env is None else env)
    root = str(Path(operone_zmq.__file__).resolve().parent.parent)
    rest = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    out["PYTHONPATH"] = os.pathsep.join([root, *rest])
    return out


class Child:
    """A child process with its output in a log file, always stopped:
    SIGTERM, then SIGKILL after a timeout."""

    def __init__(self, name: str, argv: list[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                  env=child_env(env), stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def wait_ready(self, ready: Path, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait for the JSON ready file the child writes once it serves."""
        deadline = time.monotonic() + timeout
        while True:
            if ready.exists():
                try:
                    info: dict[str, Any] = json.loads(ready.read_text())
                    if isinstance(info.get("compiled"), int):
                        DAEMON_BUILDS[self.name] = info["compiled"]
                    return info
                except ValueError:
                    pass  # written but not complete yet
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.p.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.tail()}")
            time.sleep(0.02)

    def tail(self, n: int = 30) -> str:
        self._out.flush()
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL (a crash, for failover measurements); reaped at once."""
        if self.alive():
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(5)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        if not self._out.closed:
            self._out.close()
        return self.p.returncode

    def complaints(self) -> list[str]:
        """What the child printed: a benchmark's processes should print nothing
        (operone logs at warning level here), so any line is worth a look."""
        try:
            return self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []


# =====================================================================
# Nodes of a mesh
# =====================================================================
class BenchNode:
    """One node's home on 127.0.0.1 with its broker and workers as real processes.

    ``env`` is added to this process's environment for every child (e.g.
    ``OPERONE_BROKER_HEARTBEAT_INTERVAL``); the log level is warning."""

    def __init__(self, work: Path, node_id: str, env: Mapping[str, str] | None = None) -> None:
        from operone_zmq.aio.sockets import CurveKeys
        from operone_zmq.config import Home, init_home

        self.node_id = node_id
        self.dir = work / node_id
        self.base_port = free_base_port()
        self.home = Home(self.dir)
        _, kp = init_home(self.home, node_id, base_port=self.base_port, host="127.0.0.1")
        assert kp.secret is not None
        self.public = kp.public
        self.keys = CurveKeys(kp.public, kp.secret, kp.public)
        self.env = {**os.environ, "OPERONE_LOG_LEVEL": "warning", **(env or {}),
                    "OPERONE_HOME": str(self.dir)}
        self.env.pop("OPERONE_NODE_ID", None)
        self.broker: Child | None = None
        #: Put before the broker's command line (e.g. valgrind), with the
        #: time it may then take to start.
        self.broker_prefix: list[str] = []
        self.start_timeout = START_TIMEOUT
        self.workers: list[Child] = []
        #: Every process ever started here (killed ones included), for stop() and logs.
        self.children: list[Child] = []
        self._n = itertools.count(1)

    @property
    def address(self) -> str:
        return f"{self.node_id}@127.0.0.1:{self.base_port}"

    def trust(self, other: BenchNode) -> None:
        """Trust ``other``'s node key under its node id (for peer links)."""
        from operone_zmq.config import node_signing_key
        from operone_zmq.security.keys import TrustStore

        TrustStore(self.home.trust_dir).accept(other.node_id, other.public,
                                               source="bench: a node of the same mesh",
                                               signing_key=node_signing_key(other.home))

    def _argv(self, what: str, *args: str) -> list[str]:
        return operone_argv("--home", str(self.dir), what, "start", *args)

    def start_broker(self, *peers: BenchNode) -> Child:
        """Start the broker, dialling ``peers``; blocks until it serves."""
        n = next(self._n)
        ready = self.dir / f"broker-{n}.ready"
        dial = [a for p in peers for a in ("--peer", p.address)]
        c = Child(f"{self.node_id} broker",
                  [*self.broker_prefix, *self._argv("broker", "--ready-file", str(ready), *dial)],
                  self.dir / f"broker-{n}.log", self.env)
        self.children.append(c)
        self.broker = c
        c.wait_ready(ready, self.start_timeout)
        return c

    def start_worker(self, *args: str) -> Child:
        """Start a worker (extra ``operone worker start`` arguments); blocks until it runs."""
        n = next(self._n)
        ready = self.dir / f"worker-{n}.ready"
        c = Child(f"{self.node_id} worker {n}",
                  self._argv("worker", "--name", f"{self.node_id}.w{n}", "--ready-file",
                             str(ready), *args),
                  self.dir / f"worker-{n}.log", self.env)
        self.children.append(c)
        self.workers.append(c)
        c.wait_ready(ready)
        return c

    def client(self) -> Any:
        """An AsyncClient of this node's broker (not connected yet: ``async with``)."""
        from operone_zmq.aio.client import AsyncClient

        return AsyncClient("127.0.0.1", self.base_port, keys=self.keys)

    def pids(self) -> dict[str, int]:
        """Live processes, by name."""
        return {c.name: c.pid for c in self.children if c.alive()}

    def stop(self) -> None:
        for c in reversed(self.children):
            c.stop()

    def logs(self) -> dict[str, list[str]]:
        """Output of every child that printed anything, by name."""
        out: dict[str, list[str]] = {}
        for c in self.children:
            lines = c.complaints()
            if lines:
                out[c.name if c.name not in out else f"{c.name} ({c.pid})"] = lines
        return out


class BenchMesh:
    """Several :class:`BenchNode` on 127.0.0.1 that trust each other's node keys."""

    def __init__(self, work: Path, names: list[str],
                 env: Mapping[str, str] | None = None) -> None:
        self.nodes = {n: BenchNode(work, n, env) for n in names}
        #: What the children had printed when stop() began.
        self.running_logs: dict[str, list[str]] = {}
        for a in self.nodes.values():
            for b in self.nodes.values():
                if a is not b:
                    a.trust(b)

    def __getitem__(self, name: str) -> BenchNode:
        return self.nodes[name]

    async def start(self, links: list[tuple[str, str]]) -> None:
        """Start every broker, in parallel; ``(a, b)`` in ``links``: a dials b."""
        dials: dict[str, list[BenchNode]] = {n: [] for n in self.nodes}
        for a, b in links:
            dials[a].append(self.nodes[b])
        await asyncio.gather(*(asyncio.to_thread(node.start_broker, *dials[n])
                               for n, node in self.nodes.items()))

    async def start_workers(self, per_node: Mapping[str, list[str]]) -> None:
        """One worker on each node named in ``per_node`` (its extra arguments), in parallel."""
        await asyncio.gather(*(asyncio.to_thread(self.nodes[n].start_worker, *args)
                               for n, args in per_node.items()))

    async def wait_converged(self, timeout: float = 30.0) -> None:
        """Until every broker routes to every other one."""
        names = set(self.nodes)
        clients = [await node.client().connect() for node in self.nodes.values()]
        try:
            async def done() -> bool:
                for c in clients:
                    topo = await c.topology()
                    if {x["id"] for x in topo["nodes"] if x["reachable"]} != names:
                        return False
                return True

            await wait_until(done, timeout, "the mesh to converge")
        finally:
            for c in clients:
                await c.close()

    def stop(self) -> None:
        self.running_logs = self.logs()
        for node in self.nodes.values():
            node.stop()

    def logs(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for node in self.nodes.values():
            out |= node.logs()
        return out


async def wait_until(pred: Callable[[], Any], timeout: float, what: str,
                     step: float = 0.05) -> Any:
    """Poll ``pred`` (sync or async) until truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


#: The tool module the distributed set loads into its workers (``--tools``).
BENCH_TOOLS = '''\
"""Tools of scripts/bench.py's distributed set."""

from __future__ import annotations

import os
import time

from operone_zmq.tools import ToolContext, tool


@tool(name="bench.spin")
def spin(ms: float = 10.0) -> int:
    """Busy-loop until this thread has used ``ms`` milliseconds of CPU (CPU-bound:
    holds the GIL, so one worker process runs at most one core of them)."""
    end = time.thread_time() + ms / 1000
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


@tool(name="bench.hold")
def hold(marker: str, seconds: float = 10.0, ctx: ToolContext | None = None) -> str:
    """The first run for ``marker`` creates it and waits ``seconds`` (until cancelled);
    a later run (a retry elsewhere) returns at once, so the time from a crash
    to the result is the failover itself, not a second full run."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return "retry"
    os.close(fd)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx is not None and ctx.cancelled.is_set():
            break
        time.sleep(0.01)
    return "first"
'''
