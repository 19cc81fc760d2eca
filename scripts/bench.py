#!/usr/bin/env python3
"""Benchmarks of operone-zmq, each measured against a baseline run at the same time.

DESIGN.md section 11 states the targets as ratios against a raw pyzmq
baseline of the same shape, so a figure is only meaningful next to a
baseline measured in the same run on the same machine::

    python scripts/bench.py                      # the foundation set
    python scripts/bench.py foundation --quick   # a shorter run
    python scripts/bench.py routing mesh distributed --json out.json
    python scripts/bench.py routing --big        # also simulate 10,000 nodes
    python scripts/bench.py --profile /tmp/prof  # cProfile broker, worker, client

The foundation set runs two stacks side by side, both client -> broker ->
worker in three processes, CurveZMQ on the client's TCP hop and ipc:// to
the worker:

* **baseline**: raw pyzmq.  A broker that forwards without decoding
  (frontend ROUTER ``[client, payload]`` -> backend ROUTER ``[worker, client,
  payload]``, round robin), a worker that echoes, and a DEALER client; all
  three on asyncio with *drained* plain sockets (``loop.add_reader`` on the
  ZMQ_FD, then everything queued taken with NOBLOCK in batches, and
  ``ZMQ_EVENTS`` checked after every run because the FD is edge-triggered).
  The raw broker and worker are child processes of this script (hidden
  sub-commands ``_raw-broker`` and ``_raw-worker``).
* **operone**: real ``operone broker start`` and ``operone worker start``
  processes on a fresh home, and an :class:`AsyncClient` in this process
  running the inline ``echo`` tool.

Both clients are driven by the same code: a window of N requests in flight,
refilled from each future's done-callback (no task per job).  Repetitions of
the two stacks alternate, so drift on the machine hits both alike; figures
are medians, "noise" is half the range of the repetitions.  CPU per job is
read from /proc (every thread of each process, ZeroMQ's I/O threads
included), and so is the load other processes put on the machine meanwhile:
a busy machine is named in the notes.

Further sets (each under two minutes; every process they start is stopped):

* **routing**: a full Dijkstra over 1,000 nodes / 5,000 links (DESIGN.md:
  at most 10 ms) against a textbook heapq Dijkstra over the same adjacency,
  a RoutingTable recompute after a changed LSA in an LSDB of that size, and
  the flooding simulator (``operone_zmq.routing.sim``) at 1,000 nodes:
  virtual convergence time and messages per node (10,000 nodes with
  ``--big``: minutes and ~4.4 GB).
* **mesh**: brokers n0 - n1 - n2 - n3 in a line, a worker on each; a client
  of n0 runs echo on n0..n3 (0-3 broker hops): p50 latency and throughput
  per hop (DESIGN.md: at most +150 us per hop, each hop keeps at least half
  the throughput), against raw pyzmq relays chained in front of the raw
  broker (hidden sub-command ``_raw-relay``).
* **distributed**: ``AsyncClient.map`` over 3 worker nodes (from an origin
  without workers) versus one node with one worker, with a CPU-bound tool
  and with ``sleep`` (4 slots per worker, so spreading shows); and failover
  times: SIGKILL of the node running a job with retries (broker and
  worker, or the worker only) to the result from the other node.

Later sets (``qos``) plug into :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import heapq
import itertools
import json
import os
import platform
import pstats
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from _benchlib import (
    BENCH_TOOLS,
    START_TIMEOUT,
    BenchMesh,
    BenchNode,
    Child,
    free_base_port,
    wait_until,
)

#: Messages taken from one socket per drain run (as operone's Pump does).
BATCH = 256
#: Socket high-water marks of the raw stack (operone's SocketLimits default).
HWM = 10_000
#: Seconds one measurement may take before the benchmark gives up on it.
PHASE_TIMEOUT = 120.0
#: 64 KiB: the bulk payload of DESIGN.md section 11.
BULK_SIZE = 64 * 1024
#: Cores used by other processes during a measurement past which the run is
#: flagged as noisy (the machine has 2; the benchmark itself needs both).
NOISY_LOAD = 0.15
#: This script: the raw broker and worker are its hidden sub-commands.
SCRIPT = Path(__file__).resolve()

Submit = Callable[[], "asyncio.Future[Any]"]


# =====================================================================
# Process CPU time (Linux /proc; optional)
# =====================================================================
def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by every thread of ``pid`` (schedstat: ns resolution),
    or None where /proc is not available."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    if total:
        return total / 1e9
    try:  # no schedstat (kernel option): utime + stime in clock ticks
        with open(f"/proc/{pid}/stat") as f:
            fields_ = f.read().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU time every process on the machine has used so far (all cores), from
    /proc/stat; with :func:`cpu_seconds` of our own processes it tells how
    busy the machine was with other work while we measured."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle, iowait
    busy = sum(v[:8]) - v[3] - v[4]
    return busy / os.sysconf("SC_CLK_TCK")


# =====================================================================
# Child processes (Child and free_base_port are in _benchlib.py)
# =====================================================================
def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


# =====================================================================
# The raw pyzmq stack: a drained asyncio loop over plain sockets
# =====================================================================
def _raw_socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int) -> zmq.Socket[bytes]:
    s: zmq.Socket[bytes] = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, HWM)
    s.setsockopt(zmq.RCVHWM, HWM)
    return s


class Drain:
    """The drained-socket loop of the baseline, written as plainly as it can be.

    ``handlers[i]`` handles one message of ``sockets[i]``; sends go out at
    once with NOBLOCK (a full pipe queues them here for the next run).  The
    ZMQ_FD is edge-triggered, so every run ends by checking ZMQ_EVENTS, and
    :meth:`kick` must follow any send made outside a run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sockets: list[zmq.Socket[bytes]] = []
        self.handlers: list[Callable[[list[bytes]], None]] = []
        self.backlog: dict[zmq.Socket[bytes], deque[list[bytes]]] = {}
        self._scheduled = False
        self.closed = False

    def add(self, sock: zmq.Socket[bytes], handler: Callable[[list[bytes]], None]) -> None:
        self.sockets.append(sock)
        self.handlers.append(handler)
        self.backlog[sock] = deque()
        self.loop.add_reader(sock.getsockopt(zmq.FD), self.kick)
        self.kick()

    def kick(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.loop.call_soon(self._run)

    def send(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        q = self.backlog[sock]
        if q:
            q.append(frames)
            return
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            q.append(frames)

    def _run(self) -> None:
        self._scheduled = False
        if self.closed:
            return
        more = False
        for sock, handle in zip(self.sockets, self.handlers, strict=True):
            for _ in range(BATCH):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handle(frames)
            else:
                more = True
        waiting = False
        for sock, q in self.backlog.items():
            while q:
                try:
                    sock.send_multipart(q[0], zmq.NOBLOCK)
                except zmq.Again:
                    waiting = True
                    break
                q.popleft()
        if more or any(s.getsockopt(zmq.EVENTS) & zmq.POLLIN for s in self.sockets):
            self.kick()
        elif waiting:
            self.loop.call_later(0.001, self.kick)

    def close(self) -> None:
        self.closed = True
        for s in self.sockets:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(s.getsockopt(zmq.FD))
            s.close(0)


async def _serve_until_signalled(setup: Callable[[asyncio.AbstractEventLoop], Drain],
                                 ready: Callable[[], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    def orphaned() -> None:  # the benchmark died without stopping us: stop too
        if os.getppid() != parent:
            stop.set()
        else:
            loop.call_later(1.0, orphaned)

    loop.call_later(1.0, orphaned)
    drain = setup(loop)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        drain.close()


def raw_broker_main(argv: list[str]) -> int:
    """Hidden sub-command: the raw broker (frontend over TCP + Curve, backend ipc)."""
    p = argparse.ArgumentParser(prog="bench.py _raw-broker")
    p.add_argument("--backend", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    port = 0

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        nonlocal port
        d = Drain(loop)
        # A throwaway key pair made for this run (so passing it in argv is fine).
        fe = _raw_socket(ctx, zmq.ROUTER)
        fe.setsockopt(zmq.CURVE_SERVER, 1)
        fe.setsockopt(zmq.CURVE_PUBLICKEY, a.public.encode())
        fe.setsockopt(zmq.CURVE_SECRETKEY, a.secret.encode())
        port = fe.bind_to_random_port("tcp://127.0.0.1")
        be = _raw_socket(ctx, zmq.ROUTER)
        be.bind(a.backend)
        workers: list[bytes] = []
        rr = [0]
        send = d.send

        def on_frontend(frames: list[bytes]) -> None:  # [client, payload]
            if not workers:
                return  # the bench waits for the worker first
            i = rr[0] = (rr[0] + 1) % len(workers)
            send(be, [workers[i], *frames])

        def on_backend(frames: list[bytes]) -> None:  # [worker, client, payload]
            if len(frames) == 2 and frames[1] == b"READY":
                workers.append(frames[0])
                send(be, [frames[0], b"OK"])
                return
            send(fe, frames[1:])

        d.add(fe, on_frontend)
        d.add(be, on_backend)
        return d

    try:
        asyncio.run(_serve_until_signalled(
            setup, lambda: _write_ready(a.ready_file, {"port": port, "pid": os.getpid()})))
    finally:
        ctx.term()
    return 0


def raw_relay_main(argv: list[str]) -> int:
    """Hidden sub-command: a raw relay, the baseline of one broker hop (mesh set).

    A CurveZMQ ROUTER frontend whose messages go out unchanged on a CurveZMQ
    DEALER to the next stage (a relay or the raw broker), and back: each
    ROUTER on the way prepends the sender's identity, so replies retrace the
    path with no decoding here."""
    p = argparse.ArgumentParser(prog="bench.py _raw-relay")
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    port = 0

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        nonlocal port
        d = Drain(loop)
        fe = _raw_socket(ctx, zmq.ROUTER)
        fe.setsockopt(zmq.CURVE_SERVER, 1)
        fe.setsockopt(zmq.CURVE_PUBLICKEY, a.public.encode())
        fe.setsockopt(zmq.CURVE_SECRETKEY, a.secret.encode())
        port = fe.bind_to_random_port("tcp://127.0.0.1")
        up = _raw_socket(ctx, zmq.DEALER)
        pub, sec = zmq.curve_keypair()
        up.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        up.setsockopt(zmq.CURVE_SECRETKEY, sec)
        up.setsockopt(zmq.CURVE_SERVERKEY, a.public.encode())
        up.connect(f"tcp://127.0.0.1:{a.upstream_port}")
        send = d.send
        d.add(fe, lambda frames: send(up, frames))  # [client..., payload] on up
        d.add(up, lambda frames: send(fe, frames))  # [client..., payload] back
        return d

    try:
        asyncio.run(_serve_until_signalled(
            setup, lambda: _write_ready(a.ready_file, {"port": port, "pid": os.getpid()})))
    finally:
        ctx.term()
    return 0


def raw_worker_main(argv: list[str]) -> int:
    """Hidden sub-command: the raw worker (echoes every request)."""
    p = argparse.ArgumentParser(prog="bench.py _raw-worker")
    p.add_argument("--backend", required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    a = p.parse_args(argv)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    def setup(loop: asyncio.AbstractEventLoop) -> Drain:
        d = Drain(loop)
        s = _raw_socket(ctx, zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, f"raw-w{os.getpid()}".encode())
        s.connect(a.backend)
        send = d.send

        def on_message(frames: list[bytes]) -> None:  # [client, payload]
            if len(frames) == 1 and frames[0] == b"OK":
                _write_ready(a.ready_file, {"pid": os.getpid()})
                return
            send(s, frames)

        d.add(s, on_message)
        send(s, [b"READY"])
        d.kick()
        return d

    try:
        asyncio.run(_serve_until_signalled(setup, None))
    finally:
        ctx.term()
    return 0


class RawClient:
    """The baseline's client: a drained CurveZMQ DEALER; a request is an
    8-byte id and a body in one frame, answered by a future."""

    def __init__(self, port: int, server_public: bytes, frames: int = 1) -> None:
        self.loop = asyncio.get_running_loop()
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        pub, sec = zmq.curve_keypair()
        s = _raw_socket(self.ctx, zmq.DEALER)
        s.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        s.setsockopt(zmq.CURVE_SECRETKEY, sec)
        s.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        s.connect(f"tcp://127.0.0.1:{port}")
        self.sock = s
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._seq = 0
        #: Frames per request: 1 (id and body in one), 2 ([id + a 60-byte header, body]) or
        #: 3 (operone's shape: [id, a 60-byte header, body]).
        self._frames = frames
        self._header = b"h" * 60
        self.drain = Drain(self.loop)
        self.drain.add(s, self._on_reply)

    def submit(self, body: bytes) -> asyncio.Future[bytes]:
        self._seq += 1
        rid = self._seq.to_bytes(8, "little")
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self.pending[rid] = fut
        if self._frames == 1:
            self.drain.send(self.sock, [rid + body])
        elif self._frames == 2:
            self.drain.send(self.sock, [rid + self._header, body])
        else:
            self.drain.send(self.sock, [rid, self._header, body])
        self.drain.kick()  # a send may have eaten the FD's edge
        return fut

    def _on_reply(self, frames: list[bytes]) -> None:
        payload = frames[0]
        fut = self.pending.pop(payload[:8], None)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    def close(self) -> None:
        self.drain.close()
        for f in self.pending.values():
            f.cancel()
        self.ctx.term()


# =====================================================================
# The two stacks
# =====================================================================
class Stack:
    """A running client -> broker -> worker stack; ``submit_*`` make requests."""

    name = "?"
    broker_pid = 0
    worker_pid = 0
    #: Output of child processes that printed anything, by process name.
    logs: dict[str, list[str]]

    def submit_noop(self) -> asyncio.Future[Any]:
        raise NotImplementedError

    def submit_bulk(self) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class RawStack(Stack):
    name = "baseline"

    def __init__(self, work: Path, python: list[str], frames: int = 1) -> None:
        self.work = work
        self.frames = frames
        work.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.children: list[Child] = []
        self.logs = {}
        self.client: RawClient | None = None
        self._bulk = b"x" * BULK_SIZE

    async def start(self) -> None:
        pub, sec = zmq.curve_keypair()
        backend = f"ipc://{self.work}/raw-backend.sock"
        bready, wready = self.work / "raw-broker.ready", self.work / "raw-worker.ready"
        b = Child("raw broker", [*self.python, "_raw-broker", "--backend", backend,
                                 "--public", pub.decode(), "--secret", sec.decode(),
                                 "--ready-file", str(bready)], self.work / "raw-broker.log")
        self.children.append(b)
        info = await asyncio.to_thread(b.wait_ready, bready)
        w = Child("raw worker", [*self.python, "_raw-worker", "--backend", backend,
                                 "--ready-file", str(wready)], self.work / "raw-worker.log")
        self.children.append(w)
        await asyncio.to_thread(w.wait_ready, wready)
        self.broker_pid, self.worker_pid = b.pid, w.pid
        self.server_keys = (pub, sec)
        self.broker_port = int(info["port"])
        self.client = RawClient(self.broker_port, pub, self.frames)

    def submit_noop(self) -> asyncio.Future[Any]:
        assert self.client is not None
        return self.client.submit(b"")

    def submit_bulk(self) -> asyncio.Future[Any]:
        assert self.client is not None
        return self.client.submit(self._bulk)

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        for c in reversed(self.children):
            c.stop()
            lines = c.complaints()
            if lines:
                self.logs[c.name] = lines
        self.children.clear()


class RawChain(RawStack):
    """The mesh set's baseline: the raw stack with ``hops`` raw relays chained in
    front of its broker; ``clients[k]`` reaches the broker through k relays
    (``clients[0]`` is the plain raw stack's client)."""

    name = "raw chain"

    def __init__(self, work: Path, python: list[str], hops: int, frames: int = 1) -> None:
        super().__init__(work, python, frames)
        self.hops = hops
        self.clients: list[RawClient] = []

    async def start(self) -> None:
        await super().start()
        assert self.client is not None
        pub, sec = self.server_keys
        self.clients = [self.client]
        port = self.broker_port
        for k in range(1, self.hops + 1):
            ready = self.work / f"raw-relay{k}.ready"
            r = Child(f"raw relay {k}", [*self.python, "_raw-relay", "--upstream-port",
                                         str(port), "--public", pub.decode(), "--secret",
                                         sec.decode(), "--ready-file", str(ready)],
                      self.work / f"raw-relay{k}.log")
            self.children.append(r)
            port = int((await asyncio.to_thread(r.wait_ready, ready))["port"])
            self.clients.append(RawClient(port, pub, self.frames))

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.alive()}

    def submitter(self, hops: int) -> Submit:
        client = self.clients[hops]

        def submit() -> asyncio.Future[Any]:
            return client.submit(b"")
        return submit

    async def close(self) -> None:
        for c in self.clients[1:]:
            c.close()
        self.clients = []
        await super().close()


class OperoneStack(Stack):
    name = "operone"

    def __init__(self, work: Path, *, concurrency: int | None, profile: Path | None) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.profile = profile
        self.children: list[Child] = []
        self.logs = {}
        self.client: Any = None
        self._bulk_args = {"data": b"x" * BULK_SIZE}

    def _argv(self, what: str, *args: str) -> list[str]:
        prof: list[str] = []
        if self.profile is not None:
            prof = ["-m", "cProfile", "-o", str(self.profile / f"{what}.prof")]
        return [sys.executable, *prof, "-m", "operone_zmq", "--home", str(self.home.path),
                what, "start", *args]

    async def start(self) -> None:
        from operone_zmq.aio.client import AsyncClient
        from operone_zmq.aio.sockets import CurveKeys
        from operone_zmq.config import Home, init_home

        self.home = Home(self.work / "home")
        base = free_base_port()
        _, kp = init_home(self.home, "bench", base_port=base)
        assert kp.secret is not None
        keys = CurveKeys(kp.public, kp.secret, kp.public)
        env = {**os.environ, "OPERONE_HOME": str(self.home.path),
               "OPERONE_LOG_LEVEL": "warning"}
        env.pop("OPERONE_NODE_ID", None)
        bready, wready = self.work / "op-broker.ready", self.work / "op-worker.ready"
        b = Child("operone broker", self._argv("broker", "--ready-file", str(bready)),
                  self.work / "op-broker.log", env)
        self.children.append(b)
        await asyncio.to_thread(b.wait_ready, bready)
        extra = ["--concurrency", str(self.concurrency)] if self.concurrency else []
        w = Child("operone worker", self._argv("worker", "--name", "bench.w1", "--ready-file",
                                               str(wready), *extra),
                  self.work / "op-worker.log", env)
        self.children.append(w)
        await asyncio.to_thread(w.wait_ready, wready)
        self.broker_pid, self.worker_pid = b.pid, w.pid
        # Wait until the worker has registered, with a separate client so the
        # benchmark client only ever opens the socket of the class it uses.
        async with AsyncClient("127.0.0.1", base, keys=keys) as probe:
            deadline = time.monotonic() + START_TIMEOUT
            while "echo" not in await probe.tools():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the worker did not register:\n{w.tail()}")
                await asyncio.sleep(0.05)
        self.client = await AsyncClient("127.0.0.1", base, keys=keys).connect()

    def submit_noop(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.client.submit("echo")
        return fut

    def submit_bulk(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.client.submit("echo", self._bulk_args)
        return fut

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        for c in reversed(self.children):
            c.stop()
            lines = c.complaints()
            if lines:
                self.logs[c.name] = lines
        self.children.clear()


# =====================================================================
# Drivers: the same code for both stacks
# =====================================================================
async def run_window(submit: Submit, n: int, window: int) -> tuple[float, int]:
    """Run ``n`` requests with ``window`` in flight, refilled from the futures'
    done-callbacks.  Returns (seconds, errors)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    sent = completed = errors = 0

    def on_done(f: asyncio.Future[Any]) -> None:
        nonlocal completed, errors
        completed += 1
        if f.cancelled() or f.exception() is not None:
            errors += 1
        if finished.done():
            return
        if sent < n:
            try:
                one()
            except Exception as exc:  # submit() refused: end the phase with it
                finished.set_exception(exc)
        elif completed == n:
            finished.set_result(None)

    def one() -> None:
        nonlocal sent
        sent += 1
        submit().add_done_callback(on_done)

    t0 = time.perf_counter()
    for _ in range(min(window, n)):
        one()
    await asyncio.wait_for(finished, PHASE_TIMEOUT)
    return time.perf_counter() - t0, errors


async def run_latency(submit: Submit, n: int) -> list[float]:
    """``n`` sequential round trips; each one's latency in microseconds."""
    out: list[float] = []
    clock = time.perf_counter_ns
    deadline = time.monotonic() + PHASE_TIMEOUT
    for _ in range(n):
        t0 = clock()
        await submit()
        out.append((clock() - t0) / 1000)
        if time.monotonic() > deadline:
            raise TimeoutError("latency phase took too long")
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


@dataclass
class Params:
    reps: int
    warmup: int
    jobs: int
    window: int
    latency_n: int
    bulk_jobs: int
    bulk_window: int


@dataclass
class Row:
    """One line of the table: a metric for both stacks and its target."""

    metric: str
    unit: str
    baseline: float | None
    operone: float | None
    target: str = ""
    ok: bool | None = None
    higher_is_better: bool = True
    #: Half the range of the repetitions, relative to the median (noise).
    spread: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline and self.operone is not None:
            return self.operone / self.baseline
        return None


#: What the noise column means, unless a set says otherwise.
NOISE_NOTE = ("noise: half the range of the repetitions, relative to the median"
              " (the worse of the two stacks)")


@dataclass
class Result:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Headings of the two figure columns and of their ratio.
    columns: tuple[str, str, str] = ("baseline", "operone", "operone/base")
    noise_note: str = NOISE_NOTE


class ClientProfiler:
    """cProfile of this process, on only while the operone stack is measured."""

    def __init__(self, out: Path | None) -> None:
        self.out = out
        self.prof = cProfile.Profile() if out is not None else None

    @contextlib.contextmanager
    def on(self, stack: Stack) -> Iterator[None]:
        if self.prof is None or stack.name != "operone":
            yield
            return
        self.prof.enable()
        try:
            yield
        finally:
            self.prof.disable()

    def dump(self) -> None:
        if self.prof is not None and self.out is not None:
            self.prof.dump_stats(str(self.out / "client.prof"))


async def measure(stack: Stack, what: str, p: Params, prof: ClientProfiler) -> dict[str, Any]:
    """One repetition of one measurement on one stack."""
    pids = {"client": os.getpid(), "broker": stack.broker_pid, "worker": stack.worker_pid}
    cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
    busy0, t0 = machine_busy_seconds(), time.perf_counter()
    out: dict[str, Any] = {}
    with prof.on(stack):
        if what == "throughput":
            secs, errors = await run_window(stack.submit_noop, p.jobs, p.window)
            out = {"jobs_per_s": p.jobs / secs, "errors": errors}
            n = p.jobs
        elif what == "latency":
            lat = await run_latency(stack.submit_noop, p.latency_n)
            out = {"p50_us": statistics.median(lat), "p99_us": percentile(lat, 99),
                   "mean_us": statistics.fmean(lat)}
            n = p.latency_n
        elif what == "bulk":
            secs, errors = await run_window(stack.submit_bulk, p.bulk_jobs, p.bulk_window)
            out = {"mb_per_s": p.bulk_jobs * BULK_SIZE / secs / 1e6, "errors": errors}
            n = p.bulk_jobs
        else:  # pragma: no cover
            raise ValueError(what)
    elapsed = time.perf_counter() - t0
    busy1 = machine_busy_seconds()
    ours = 0.0
    for k, pid in pids.items():
        c0, c1 = cpu0[k], cpu_seconds(pid)
        if c0 is not None and c1 is not None:
            out[f"cpu_us_per_job_{k}"] = (c1 - c0) / n * 1e6
            ours += c1 - c0
    if busy0 is not None and busy1 is not None:
        # Cores kept busy by everything else on the machine (noise).
        out["other_load_cores"] = max(0.0, (busy1 - busy0 - ours) / elapsed)
    return out


def _median_of(reps: list[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in reps if key in r]
    return statistics.median(xs) if xs else None


# =====================================================================
# The foundation set
# =====================================================================
async def bench_foundation(args: argparse.Namespace, work: Path) -> Result:
    """Client -> broker -> worker: throughput, latency and bulk, against raw pyzmq."""
    if args.quick:
        p = Params(reps=args.reps or 3, warmup=2_000, jobs=8_000, window=args.window,
                   latency_n=1_000, bulk_jobs=800, bulk_window=args.bulk_window)
    else:
        p = Params(reps=args.reps or 5, warmup=5_000, jobs=20_000, window=args.window,
                   latency_n=3_000, bulk_jobs=2_500, bulk_window=args.bulk_window)
    prof_dir: Path | None = args.profile
    prof = ClientProfiler(prof_dir)
    raw = RawStack(work / "raw", [sys.executable, str(SCRIPT)], args.raw_frames)
    op = OperoneStack(work / "operone", concurrency=args.worker_concurrency, profile=prof_dir)
    stacks: list[Stack] = [raw, op]
    res = Result("foundation")
    reps: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        t0 = time.monotonic()
        await raw.start()
        await op.start()
        _say(f"stacks up in {time.monotonic() - t0:.1f} s; warming up")
        for s in stacks:
            await run_window(s.submit_noop, p.warmup, p.window)
            await run_window(s.submit_bulk, max(50, p.warmup // 20), p.bulk_window)
            await run_latency(s.submit_noop, max(100, p.warmup // 10))
        for what in ("throughput", "latency", "bulk"):
            for i in range(p.reps):
                # Alternate which stack goes first, so neither always follows the other.
                order = stacks if i % 2 == 0 else stacks[::-1]
                for s in order:
                    r = await measure(s, what, p, prof)
                    reps.setdefault((s.name, what), []).append(r)
                    _say(f"  {what:10s} rep {i + 1}/{p.reps} {s.name:8s} "
                         + ", ".join(f"{k}={v:,.1f}" for k, v in r.items()
                                     if not k.startswith("cpu")))
    finally:
        for s in stacks:
            with contextlib.suppress(Exception):
                await s.close()
        prof.dump()

    def med(stack: str, what: str, key: str) -> float | None:
        return _median_of(reps.get((stack, what), []), key)

    def spread(what: str, key: str) -> float | None:
        worst = None
        for stack in ("baseline", "operone"):
            xs = [r[key] for r in reps.get((stack, what), []) if key in r]
            if len(xs) > 1 and statistics.median(xs):
                sp = (max(xs) - min(xs)) / 2 / statistics.median(xs)
                worst = sp if worst is None else max(worst, sp)
        return worst

    thr_b, thr_o = med("baseline", "throughput", "jobs_per_s"), med("operone", "throughput",
                                                                     "jobs_per_s")
    row = Row(f"jobs/s, no-op, {p.window} in flight", "jobs/s", thr_b, thr_o,
              ">= 0.75x baseline")
    row.ok = None if row.ratio is None else row.ratio >= 0.75
    row.spread = spread("throughput", "jobs_per_s")
    res.rows.append(row)
    p50 = Row("latency p50, 1 in flight", "us", med("baseline", "latency", "p50_us"),
              med("operone", "latency", "p50_us"), "<= 1.2x baseline", higher_is_better=False)
    p50.ok = None if p50.ratio is None else p50.ratio <= 1.2
    p50.spread = spread("latency", "p50_us")
    res.rows.append(p50)
    p99 = Row("latency p99, 1 in flight", "us", med("baseline", "latency", "p99_us"),
              med("operone", "latency", "p99_us"), higher_is_better=False)
    p99.spread = spread("latency", "p99_us")
    res.rows.append(p99)
    bulk_o = med("operone", "bulk", "mb_per_s")
    bulk = Row(f"64 KiB payload, {p.bulk_window} in flight", "MB/s",
               med("baseline", "bulk", "mb_per_s"), bulk_o, ">= 150 MB/s")
    bulk.ok = None if bulk_o is None else bulk_o >= 150
    bulk.spread = spread("bulk", "mb_per_s")
    res.rows.append(bulk)
    for what, label in (("throughput", f"no-op, {p.window} in flight"),
                        ("latency", "no-op, 1 in flight"),
                        ("bulk", f"64 KiB, {p.bulk_window} in flight")):
        for proc in ("client", "broker", "worker"):
            key = f"cpu_us_per_job_{proc}"
            b, o = med("baseline", what, key), med("operone", what, key)
            if b is not None or o is not None:
                res.rows.append(Row(f"CPU/job {proc} ({label})", "us", b, o,
                                    higher_is_better=False))
    loads = [r["other_load_cores"] for rs in reps.values() for r in rs
             if "other_load_cores" in r]
    if loads:
        res.data["other_load_cores"] = {"median": statistics.median(loads), "max": max(loads)}
        if statistics.median(loads) > NOISY_LOAD:
            res.notes.append(
                f"the machine was busy with other work: {statistics.median(loads):.2f} cores"
                f" on average (max {max(loads):.2f}) besides the benchmark's processes;"
                " absolute figures are low and noisy, ratios less so (repetitions alternate)")
    for s in stacks:
        for proc, lines in s.logs.items():
            res.notes.append(f"the {proc} printed {len(lines)} lines; the first: {lines[0][:200]}")
            res.data.setdefault("child_output", {})[proc] = lines[-200:]
    errors = sum(r.get("errors", 0) for rs in reps.values() for r in rs)
    if errors:
        res.notes.append(f"{errors} requests failed during the measurements")
    res.data |= {
        "params": p.__dict__,
        "worker_concurrency": args.worker_concurrency or "default (workers.concurrency)",
        "raw_frames": args.raw_frames,
        "repetitions": {f"{s}/{w}": rs for (s, w), rs in reps.items()},
    }
    if prof_dir is not None:
        res.notes.append(f"profiles (cProfile, which slows every figure): {prof_dir}/"
                         "broker.prof, worker.prof, client.prof")
    return res


# =====================================================================
# Shared by the mesh, routing and distributed sets
# =====================================================================
def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _half_range(*series: list[float]) -> float | None:
    """Half the range of each series relative to its median; the worst of them."""
    worst: float | None = None
    for xs in series:
        if len(xs) > 1 and statistics.median(xs):
            sp = (max(xs) - min(xs)) / 2 / abs(statistics.median(xs))
            worst = sp if worst is None else max(worst, sp)
    return worst


class LoadMeter:
    """CPU used by our processes and by everything else on the machine meanwhile."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        self.busy0 = machine_busy_seconds()
        self.t0 = time.perf_counter()

    def done(self, n: int) -> dict[str, float]:
        """CPU per job of all our processes (us), and other load (cores)."""
        elapsed = time.perf_counter() - self.t0
        busy1 = machine_busy_seconds()
        ours = 0.0
        known = True
        for k, pid in self.pids.items():
            c0, c1 = self.cpu0[k], cpu_seconds(pid)
            if c0 is None or c1 is None:
                known = False
                continue
            ours += c1 - c0
        out: dict[str, float] = {}
        if known and n:
            out["cpu_us_per_job"] = ours / n * 1e6
        if self.busy0 is not None and busy1 is not None and elapsed > 0:
            out["other_load_cores"] = max(0.0, (busy1 - self.busy0 - ours) / elapsed)
        return out


def _load_note(res: Result, loads: list[float]) -> None:
    if loads:
        res.data["other_load_cores"] = {"median": statistics.median(loads), "max": max(loads)}
        if statistics.median(loads) > NOISY_LOAD:
            res.notes.append(
                f"the machine was busy with other work: {statistics.median(loads):.2f} cores"
                f" on average (max {max(loads):.2f}) besides the benchmark's processes;"
                " absolute figures are low and noisy")


def _log_notes(res: Result, mesh: BenchMesh | None, extra: dict[str, list[str]] | None = None,
               prefix: str = "") -> None:
    """Notes on what child processes printed (at warning level): while they ran
    (worth a look), and while the mesh was being stopped (brokers stopping one
    after another see each other go: partition warnings are expected there)."""
    running = dict(extra or {})
    stopping: dict[str, list[str]] = {}
    if mesh is not None:
        before = mesh.running_logs
        for proc, lines in mesh.logs().items():
            n = len(before.get(proc, []))
            if n:
                running[proc] = lines[:n]
            if lines[n:]:
                stopping[proc] = lines[n:]
    for proc, lines in running.items():
        res.notes.append(f"{prefix}the {proc} printed {len(lines)} lines while running;"
                         f" the first: {lines[0][:200]}")
        res.data.setdefault("child_output", {})[prefix + proc] = lines[-200:]
    if stopping:
        kinds = sorted({_log_event(x) for lines in stopping.values() for x in lines})
        res.notes.append(f"{prefix}while the mesh was stopped, {len(stopping)} processes printed"
                         f" {sum(map(len, stopping.values()))} lines ({', '.join(kinds)})")
        for proc, lines in stopping.items():
            res.data.setdefault("child_output_at_stop", {})[prefix + proc] = lines[-50:]


def _log_event(line: str) -> str:
    """The event name of a structlog console line (``... [warning  ] event  k=v``)."""
    _, sep, rest = line.partition("] ")
    return (rest.split() or ["?"])[0] if sep else line[:40]


# =====================================================================
# The routing set: Dijkstra, the routing table, the flooding simulator
# =====================================================================
def _textbook_dijkstra(adjacency: dict[str, list[tuple[int, str]]],
                       source: str) -> tuple[dict[str, int], dict[str, str]]:
    """The baseline: Dijkstra as in a textbook (heapq, lazy deletion), distances and
    predecessors only, over the same adjacency lists (no tie-break, no paths)."""
    dist: dict[str, int] = {source: 0}
    pred: dict[str, str] = {}
    done: set[str] = set()
    heap: list[tuple[int, str]] = [(0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        for w, v in adjacency[u]:
            nd = d + w
            old = dist.get(v)
            if old is None or nd < old:
                dist[v] = nd
                pred[v] = u
                heapq.heappush(heap, (nd, v))
    return dist, pred


def _time_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls, in ms (a garbage collection first)."""
    gc.collect()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _sim_rows(res: Result, n: int, links: int, seed: int, *, degree: float | None,
              cut: bool) -> None:
    """Run the flooding simulator over ``n`` nodes: cold start (and one link cut)."""
    from operone_zmq.routing.sim import Simulator, random_topology

    t0 = time.perf_counter()
    if degree is None:
        nodes, edges = random_topology(n, links=links, seed=seed)
    else:
        nodes, edges = random_topology(n, degree, seed=seed)
    sim = Simulator(nodes, edges, seed=seed, wall_clock=time.perf_counter)
    build = time.perf_counter() - t0
    label = f"sim {n:,} nodes/{len(sim.links):,} links"
    _say(f"  {label}: built in {build:.1f} s; cold start ...")
    start = sim.start()
    _say("  " + start.summary())
    res.rows.append(Row(f"{label}: cold start converges", "ms", None,
                        start.convergence_time * 1000, "converges (virtual time)",
                        ok=start.converged, higher_is_better=False))
    res.rows.append(Row(f"{label}: LSA messages per node", "msgs", None,
                        start.messages_per_node, higher_is_better=False))
    res.rows.append(Row(f"{label}: LSAs per node", "LSAs", None, start.lsas_per_node,
                        higher_is_better=False))
    phases = [start]
    if cut:
        rng = random.Random(seed)
        candidates = [(a, b) for a, b in sorted(sim.links)
                      if len(sim.nodes[a].neighbors) > 1 and len(sim.nodes[b].neighbors) > 1]
        a, b = rng.choice(candidates)
        rep = sim.cut_link(a, b)
        _say("  " + rep.summary())
        res.rows.append(Row(f"{label}: one link cut, reconverges", "ms", None,
                            rep.convergence_time * 1000, "converges (virtual time)",
                            ok=rep.converged, higher_is_better=False))
        res.rows.append(Row(f"{label}: one link cut, messages per node", "msgs", None,
                            rep.messages_per_node, higher_is_better=False))
        phases.append(rep)
    t1 = time.perf_counter()
    pairs = sim.sample_pairs(10)
    try:
        sim.check_forwarding(pairs)
        fwd = f"forwarding checked hop by hop on {len(pairs)} random routes: consistent"
    except AssertionError as exc:
        fwd = f"forwarding check FAILED: {exc}"
        res.rows.append(Row(f"{label}: hop-by-hop forwarding", "yes/no", None, 0.0,
                            "consistent, loop-free", ok=False))
    rss = ""
    with contextlib.suppress(ImportError):
        import resource

        rss = (f"; peak RSS of this process so far"
               f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2:.1f} GB")
    res.notes.append(f"{label} (seed {seed}): built in {build:.1f} s, simulated in "
                     + ", ".join(f"{p.action} {p.wall_seconds:.1f} s" for p in phases)
                     + f" of real time; {fwd} ({time.perf_counter() - t1:.1f} s){rss}")
    res.data.setdefault("simulator", {})[str(n)] = [
        {**p.__dict__} for p in phases]


async def bench_routing(args: argparse.Namespace, work: Path) -> Result:
    """Full Dijkstra and a routing-table recompute at 1,000 nodes / 5,000 links,
    against a textbook heapq Dijkstra; the flooding simulator at 1,000 nodes
    (and 10,000 with --big)."""
    from operone_zmq.routing.dijkstra import Graph, RoutingTable, _dijkstra, shortest_paths
    from operone_zmq.routing.lsa import LSA, LinkInfo
    from operone_zmq.routing.lsdb import LinkStateDB
    from operone_zmq.routing.sim import random_topology

    n_nodes, n_links, seed = 1000, 5000, 1
    reps = args.reps or (3 if args.quick else 5)
    runs = 7 if args.quick else 15
    res = Result("routing", columns=("textbook", "operone", "ratio"),
                 noise_note="figures: medians of repetitions (each the median of"
                            f" {runs} runs); noise: half the range of the repetitions,"
                            " relative to the median")

    # The graph of bench_routing.py: random connected, costs 0.1-50 ms, via LSAs.
    rng = random.Random(seed)
    nodes, edges = random_topology(n_nodes, links=n_links, seed=seed)
    by_node: dict[str, list[LinkInfo]] = {n: [] for n in nodes}
    for a, b in edges:
        cost = round(rng.uniform(0.1, 50.0), 3)
        by_node[a].append(LinkInfo(b, cost))
        by_node[b].append(LinkInfo(a, cost))
    lsas = [LSA(n, 1, tuple(links)) for n, links in by_node.items()]
    graph = Graph.from_lsas(lsas)
    if len(graph.edges) != n_links:
        raise RuntimeError(f"graph has {len(graph.edges)} links, not {n_links}")
    source = nodes[0]
    # Both compute the same distances (a check that the baseline is a fair one).
    full = shortest_paths(graph, source)
    base_dist, _ = _textbook_dijkstra(graph.adjacency, source)
    if len(full) != len(base_dist) - 1 or any(
            abs(p.cost - base_dist[d] * 0.001) > 1e-6 for d, p in full.items()):
        raise RuntimeError("shortest_paths and the textbook Dijkstra disagree")

    # A routing table over an LSDB of that size, the way a broker holds it.
    lsdb = LinkStateDB(source)
    lsdb.originate(by_node[source], ("echo",), (), 0.0, 1, 0.0)
    got = lsdb.install_many([x for x in lsas if x.origin != source], 0.0, None)
    if got.refused or len(lsdb) != n_nodes:
        raise RuntimeError(f"LSDB holds {len(lsdb)} origins ({got.refused[:1]})")
    table = RoutingTable(lsdb)
    table.routes()
    # Each recompute follows a real topology change: one far node's LSA arrives
    # with one link's cost changed (seq + 1), as after a new RTT measurement.
    far = nodes[-1]
    far_links = list(by_node[far])
    seq = [1]

    def change_topology() -> None:
        seq[0] += 1
        link = far_links[0]
        far_links[0] = LinkInfo(link.neighbor, link.cost + (1.0 if seq[0] % 2 else -1.0))
        r = lsdb.install_many([LSA(far, seq[0], tuple(far_links))], float(seq[0]), None)
        if not r.accepted:
            raise RuntimeError("the changed LSA was not accepted")

    def recompute() -> None:
        before = table.computations
        table.next_hop(far)
        if table.computations != before + 1:
            raise RuntimeError("the routing table did not recompute")

    def recompute_ms(runs: int) -> float:
        times = []
        gc.collect()
        for _ in range(runs):
            change_topology()
            t0 = time.perf_counter()
            recompute()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    figs: dict[str, list[float]] = {}
    for i in range(reps):
        order = ["base", "op"] if i % 2 == 0 else ["op", "base"]
        for who in order:
            if who == "base":
                figs.setdefault("base", []).append(
                    _time_ms(lambda: _textbook_dijkstra(graph.adjacency, source), runs))
            else:
                figs.setdefault("full", []).append(
                    _time_ms(lambda: shortest_paths(graph, source), runs))
                figs.setdefault("bare", []).append(
                    _time_ms(lambda: _dijkstra(graph.adjacency, source), runs))
                figs.setdefault("build", []).append(_time_ms(lambda: Graph.from_lsdb(lsdb),
                                                             max(3, runs // 3)))
                figs.setdefault("table", []).append(recompute_ms(max(3, runs // 3)))
        _say(f"  rep {i + 1}/{reps}: " + ", ".join(f"{k}={v[-1]:.2f} ms"
                                                   for k, v in figs.items()))
    base = _med(figs["base"])
    row = Row(f"full Dijkstra, {n_nodes:,} nodes/{n_links:,} links (paths)", "ms", base,
              _med(figs["full"]), "<= 10 ms", higher_is_better=False)
    row.ok = None if row.operone is None else row.operone <= 10.0
    row.spread = _half_range(figs["base"], figs["full"])
    res.rows.append(row)
    res.rows.append(Row("  search only (operone _dijkstra, tie-break, no paths)", "ms", base,
                        _med(figs["bare"]), higher_is_better=False,
                        spread=_half_range(figs["base"], figs["bare"])))
    res.rows.append(Row("RoutingTable recompute after an LSA (build + Dijkstra)", "ms", base,
                        _med(figs["table"]), "(none; 10 ms is for Dijkstra)",
                        higher_is_better=False, spread=_half_range(figs["table"])))
    res.rows.append(Row("  of which: graph build from the LSDB (both-ends rule)", "ms", None,
                        _med(figs["build"]), higher_is_better=False,
                        spread=_half_range(figs["build"])))
    res.notes.append("textbook: heapq Dijkstra with lazy deletion, distances and predecessors"
                     " only, over the same adjacency lists; operone's full result adds the"
                     " deterministic tie-break and every path")
    res.data["dijkstra_ms"] = figs

    _sim_rows(res, n_nodes, n_links, seed, degree=None, cut=True)
    if args.big:
        _sim_rows(res, 10_000, 0, seed, degree=4.0, cut=False)
    else:
        res.notes.append("the 10,000-node simulation (DESIGN.md: 'the simulator converges"
                         " 10,000 nodes'; ~6 minutes and ~4.4 GB) runs with --big")
    return res


# =====================================================================
# The mesh set: per-hop cost on a line of brokers
# =====================================================================
async def bench_mesh(args: argparse.Namespace, work: Path) -> Result:
    """n0 - n1 - n2 - n3 in a line, a worker on each; from a client of n0, echo
    on n0 (0 hops) .. n3 (3 hops): p50 latency and throughput per hop count,
    against raw pyzmq relays chained in front of the raw broker."""
    names = ["n0", "n1", "n2", "n3"]
    hops = range(len(names))
    reps = args.reps or (2 if args.quick else 3)
    lat_n = 1000 if args.quick else 2000
    jobs = 3000 if args.quick else 6000
    window = args.window
    env = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": "1.0", "OPERONE_LOG_LEVEL": "warning"}
    res = Result("mesh")
    mesh = BenchMesh(work / "mesh", names, env)
    raw = RawChain(work / "raw", [sys.executable, str(SCRIPT)], len(names) - 1, args.raw_frames)
    figs: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    client: Any = None
    try:
        t0 = time.monotonic()
        await raw.start()
        await mesh.start(list(itertools.pairwise(names)))
        await mesh.start_workers({n: [] for n in names})
        await mesh.wait_converged()
        client = await mesh["n0"].client().connect()
        for n in names:  # routes and tools known everywhere
            await wait_until(lambda n=n: _ok(client.submit("echo", on=n, timeout=5)), 30,
                             f"echo on {n} to answer")
        _say(f"raw chain and a line of 4 brokers up in {time.monotonic() - t0:.1f} s;"
             " warming up")
        pids: dict[str, dict[str, int]] = {"baseline": {"client": os.getpid(), **raw.pids()},
                                           "operone": {"client": os.getpid()}}
        for node in mesh.nodes.values():
            pids["operone"] |= node.pids()

        def op_submitter(n: str) -> Submit:
            def submit() -> asyncio.Future[Any]:
                fut: asyncio.Future[Any] = client.submit("echo", on=n)
                return fut
            return submit

        submitters: dict[str, list[Submit]] = {
            "baseline": [raw.submitter(k) for k in hops],
            "operone": [op_submitter(n) for n in names]}
        for subs in submitters.values():
            for sub in subs:
                await run_window(sub, jobs // 4, window)
                await run_latency(sub, 200)
        stacks = list(submitters)
        for i in range(reps):
            for what in ("latency", "throughput"):
                for k in (hops if i % 2 == 0 else hops[::-1]):
                    for s in (stacks if (i + k) % 2 == 0 else stacks[::-1]):
                        sub = submitters[s][k]
                        meter = LoadMeter(pids[s])
                        if what == "latency":
                            lat = await run_latency(sub, lat_n)
                            r = {"p50_us": statistics.median(lat),
                                 "p99_us": percentile(lat, 99), **meter.done(lat_n)}
                            msg = f"p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us"
                        else:
                            secs, errors = await run_window(sub, jobs, window)
                            r = {"jobs_per_s": jobs / secs, "errors": errors,
                                 **meter.done(jobs)}
                            msg = f"{r['jobs_per_s']:,.0f} jobs/s" + (
                                f", {errors} errors" if errors else "")
                        figs.setdefault((s, k, what), []).append(r)
                        _say(f"  {what:10s} rep {i + 1}/{reps} {k} hops {s:8s}: {msg}")
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        with contextlib.suppress(Exception):
            await raw.close()
        mesh.stop()

    def xs(s: str, k: int, what: str, key: str) -> list[float]:
        return [r[key] for r in figs.get((s, k, what), []) if key in r]

    def med(s: str, k: int, what: str, key: str) -> float | None:
        return _med(xs(s, k, what, key))

    def spread(k: int, what: str, key: str) -> float | None:
        return _half_range(xs("baseline", k, what, key), xs("operone", k, what, key))

    def hop_label(k: int) -> str:
        return f"{k} hop{'' if k == 1 else 's'}"

    for k in hops:
        res.rows.append(Row(f"latency p50, 1 in flight, {hop_label(k)} (on={names[k]})", "us",
                            med("baseline", k, "latency", "p50_us"),
                            med("operone", k, "latency", "p50_us"), higher_is_better=False,
                            spread=spread(k, "latency", "p50_us")))
    per_hop: dict[str, float | None] = {}
    for s in stacks:
        first, last = med(s, 0, "latency", "p50_us"), med(s, hops[-1], "latency", "p50_us")
        per_hop[s] = None if first is None or last is None else (last - first) / hops[-1]
    row = Row(f"added p50 per extra hop (mean over {hops[-1]})", "us", per_hop["baseline"],
              per_hop["operone"], "<= 150 us per hop", higher_is_better=False)
    row.ok = None if row.operone is None else row.operone <= 150
    res.rows.append(row)
    steps = []
    for k in hops[1:]:
        a, b = med("operone", k - 1, "latency", "p50_us"), med("operone", k, "latency",
                                                               "p50_us")
        if a is not None and b is not None:
            steps.append(b - a)
    res.rows.append(Row(f"latency p99, 1 in flight, {hop_label(hops[-1])}", "us",
                        med("baseline", hops[-1], "latency", "p99_us"),
                        med("operone", hops[-1], "latency", "p99_us"),
                        higher_is_better=False))
    zero = med("operone", 0, "throughput", "jobs_per_s")
    raw_keeps: list[str] = []
    for k in hops:
        op = med("operone", k, "throughput", "jobs_per_s")
        prev = med("operone", k - 1, "throughput", "jobs_per_s") if k else None
        raw_prev = med("baseline", k - 1, "throughput", "jobs_per_s") if k else None
        base = med("baseline", k, "throughput", "jobs_per_s")
        keep = None if not prev or op is None else op / prev
        label = f"jobs/s, {window} in flight, {hop_label(k)}"
        if k == 1 and keep is not None:
            label += f" ({keep:.2f}x of 0 hops)"
        elif k and keep is not None and zero and op is not None:
            label += f" ({op / zero:.2f}x of 0 hops, {keep:.2f}x of {k - 1})"
        if raw_prev and base is not None:
            raw_keeps.append(f"{base / raw_prev:.2f}x")
        row = Row(label, "jobs/s", base, op, ">= 0.5x the hop before" if k else "",
                  spread=spread(k, "throughput", "jobs_per_s"))
        row.ok = None if keep is None else keep >= 0.5
        res.rows.append(row)
    for what, label in (("latency", "1 in flight"), ("throughput", f"{window} in flight")):
        for k in (hops if what == "throughput" else (0, hops[-1])):
            res.rows.append(Row(f"CPU/job, all processes ({label}), {hop_label(k)}", "us",
                                med("baseline", k, what, "cpu_us_per_job"),
                                med("operone", k, what, "cpu_us_per_job"),
                                higher_is_better=False))
    res.notes.append(
        "operone: a line n0 - n1 - n2 - n3 (each dials the next), one worker per node,"
        " CurveZMQ on every link, broker heartbeat 1.0 s (the default); a client of n0 runs"
        " the inline echo with on=nK.  baseline: raw pyzmq (the foundation set's drained"
        " broker and worker) with K relays chained in front, each a drained process"
        " forwarding over CurveZMQ TCP without decoding, as an operone hop does with"
        " decoding")
    if steps:
        res.notes.append("operone p50 added by each hop in turn: "
                         + ", ".join(f"+{x:.0f} us" for x in steps))
    if raw_keeps:
        res.notes.append("throughput the baseline keeps at each hop, of the hop before: "
                         + ", ".join(raw_keeps))
    loads = [r["other_load_cores"] for rs in figs.values() for r in rs
             if "other_load_cores" in r]
    _load_note(res, loads)
    errors = sum(int(r.get("errors", 0)) for rs in figs.values() for r in rs)
    if errors:
        res.notes.append(f"{errors} requests failed during the measurements")
    _log_notes(res, mesh, raw.logs)
    res.data |= {"params": {"reps": reps, "latency_n": lat_n, "jobs": jobs, "window": window,
                            "raw_frames": args.raw_frames},
                 "repetitions": {f"{s}/{k}/{w}": rs for (s, k, w), rs in figs.items()},
                 "added_p50_us_per_hop": {"mean": per_hop, "steps": steps}}
    return res


async def _ok(fut: asyncio.Future[Any]) -> bool:
    """Whether a job succeeds (its error swallowed: for polling until it does)."""
    try:
        await fut
    except Exception:
        return False
    return True


# =====================================================================
# The distributed set: map over 3 nodes vs 1, and failover times
# =====================================================================
async def _done_by_node(mesh: BenchMesh, names: list[str]) -> dict[str, int]:
    out = {}
    for n in names:
        async with mesh[n].client() as c:
            out[n] = sum(int(w["done"]) for w in await c.workers())
    return out


async def _map_scaling(args: argparse.Namespace, work: Path, res: Result,
                       tools: Path) -> None:
    """(a) AsyncClient.map over 3 worker nodes (from an origin without workers)
    versus one node with one worker: a CPU-bound and a sleeping tool."""
    slots = 4
    env = {"OPERONE_WORKERS_CONCURRENCY": str(slots), "OPERONE_LOG_LEVEL": "warning"}
    reps = args.reps or (2 if args.quick else 3)
    spin_ms, sleep_s = 10.0, 0.05
    concurrency = 2 * 3 * slots
    spin_jobs = 150 if args.quick else 300
    sleep_jobs = 120 if args.quick else 240
    solo = BenchMesh(work / "solo", ["s"], env)
    trio = BenchMesh(work / "trio", ["o", "a", "b", "c"], env)
    workers = ["a", "b", "c"]
    cases = {
        "spin": ("bench.spin", [{"ms": spin_ms}] * spin_jobs),
        "sleep": ("sleep", [{"seconds": sleep_s}] * sleep_jobs),
    }
    figs: dict[tuple[str, str], list[dict[str, float]]] = {}
    spread_seen: dict[str, list[dict[str, int]]] = {}
    stale_loads: list[dict[str, Any]] = []
    views: list[dict[str, Any]] = []
    map_errors: list[str] = []
    clients: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        await asyncio.gather(solo.start([]),
                             trio.start([("o", "a"), ("o", "b"), ("o", "c")]))
        await asyncio.gather(solo.start_workers({"s": ["--tools", str(tools)]}),
                             trio.start_workers({n: ["--tools", str(tools)] for n in workers}))
        await trio.wait_converged()
        clients["1 node"] = await solo["s"].client().connect()
        clients["3 nodes"] = await trio["o"].client().connect()
        for tool in ("bench.spin", "sleep"):
            await wait_until(lambda t=tool: _candidates(clients["3 nodes"], t, workers), 30,
                             f"o to place {tool} on a, b and c")
            await wait_until(lambda t=tool: _candidates(clients["1 node"], t, ["s"]), 30,
                             f"s to offer {tool}")
        _say(f"1 node and 3+1 nodes up in {time.monotonic() - t0:.1f} s; warming up")
        pids: dict[str, dict[str, int]] = {"1 node": {"client": os.getpid()},
                                           "3 nodes": {"client": os.getpid()}}
        pids["1 node"] |= solo["s"].pids()
        for node in trio.nodes.values():
            pids["3 nodes"] |= node.pids()
        for c in clients.values():
            await c.map("bench.spin", [{"ms": 1.0}] * 50, concurrency=concurrency)
            await c.map("sleep", [{"seconds": 0.01}] * 50, concurrency=concurrency)
        for i in range(reps):
            for case, (tool, argl) in cases.items():
                order = list(clients) if i % 2 == 0 else list(clients)[::-1]
                for setup in order:
                    c = clients[setup]
                    before = await _done_by_node(trio, workers) if setup == "3 nodes" else {}
                    if before:  # what o believes of the (idle) worker nodes now
                        view = await _placement_view(c, tool, workers)
                        views.append({"case": case, "rep": i + 1, "when": "before", **view})
                        stale = {n: v for n, v in view["load"].items() if v}
                        if stale:
                            stale_loads.append({"case": case, "rep": i + 1, **stale})
                    meter = LoadMeter(pids[setup])
                    t1 = time.perf_counter()
                    try:
                        await asyncio.wait_for(c.map(tool, argl, concurrency=concurrency),
                                               PHASE_TIMEOUT)
                    except Exception as exc:  # a finding: recorded, the set goes on
                        secs = time.perf_counter() - t1
                        map_errors.append(f"{case} rep {i + 1} on {setup}, after {secs:.1f} s:"
                                          f" {type(exc).__name__}: {exc}")
                        _say(f"  map {case:5s} rep {i + 1}/{reps} {setup}: FAILED: {exc!r}")
                        continue
                    secs = time.perf_counter() - t1
                    r = {"jobs_per_s": len(argl) / secs, **meter.done(len(argl))}
                    figs.setdefault((setup, case), []).append(r)
                    if before:
                        view = await _placement_view(c, tool, workers)
                        views.append({"case": case, "rep": i + 1, "when": "after", **view})
                        after = await _done_by_node(trio, workers)
                        spread_seen.setdefault(case, []).append(
                            {n: after[n] - before[n] for n in workers})
                    _say(f"  map {case:5s} rep {i + 1}/{reps} {setup}: "
                         f"{r['jobs_per_s']:,.1f} jobs/s")
    finally:
        for c in clients.values():
            with contextlib.suppress(Exception):
                await c.close()
        solo.stop()
        trio.stop()

    def xs(setup: str, case: str) -> list[float]:
        return [r["jobs_per_s"] for r in figs.get((setup, case), [])]

    row = Row(f"map bench.spin {spin_ms:g} ms (CPU), {concurrency} in flight", "jobs/s",
              _med(xs("1 node", "spin")), _med(xs("3 nodes", "spin")),
              "(none; 2 cores: <= ~2x)", spread=_half_range(xs("1 node", "spin"),
                                                            xs("3 nodes", "spin")))
    res.rows.append(row)
    row = Row(f"map sleep {sleep_s * 1000:g} ms, {slots} slots/worker, {concurrency} in flight",
              "jobs/s", _med(xs("1 node", "sleep")), _med(xs("3 nodes", "sleep")),
              "expect ~3x (>= 2.7x)", spread=_half_range(xs("1 node", "sleep"),
                                                         xs("3 nodes", "sleep")))
    row.ok = None if row.ratio is None else row.ratio >= 2.7
    res.rows.append(row)
    ideal = slots / sleep_s
    res.rows.append(Row("  sleep: ideal (slots / job length)", "jobs/s", ideal, 3 * ideal))
    for case, seen in spread_seen.items():
        tot = {n: sum(s[n] for s in seen) for n in workers}
        res.notes.append(f"{case} jobs run per node over the 3-node repetitions: "
                         + ", ".join(f"{n} {v}" for n, v in tot.items()))
    if map_errors:
        res.notes.append(f"{len(map_errors)} map repetitions FAILED (AsyncClient.map raised;"
                         " left out of the figures): " + "; ".join(map_errors))
    if stale_loads:
        res.notes.append(
            "before some 3-node repetitions o's LSDB advertised a load for idle worker nodes"
            " (a stale LSA snapshot; placement weighs load x10): "
            + "; ".join(f"{d['case']} rep {d['rep']}: "
                        + ", ".join(f"{k} {v:g}" for k, v in d.items()
                                    if k not in ("case", "rep")) for d in stale_loads))
    res.notes.append(
        f"map: 1 node = one broker with one worker ({slots} slots); 3 nodes = an origin o"
        f" with no workers dialling a, b and c, one worker ({slots} slots) each; the bench"
        f" process is the client; {reps} repetitions; bench.spin busy-loops (GIL-bound, one"
        " core per worker at most), so on 2 cores 3 nodes cannot scale it past ~2x")
    res.data["map"] = {"repetitions": {f"{s}/{c}": rs for (s, c), rs in figs.items()},
                       "jobs_by_node": spread_seen, "stale_loads": stale_loads,
                       "placement_views": views,
                       "errors": map_errors,
                       "params": {"slots": slots, "concurrency": concurrency,
                                  "spin_ms": spin_ms, "sleep_s": sleep_s,
                                  "spin_jobs": spin_jobs, "sleep_jobs": sleep_jobs}}
    _load_note(res, [r["other_load_cores"] for rs in figs.values() for r in rs
                     if "other_load_cores" in r])
    _log_notes(res, solo, prefix="map: ")
    _log_notes(res, trio, prefix="map: ")


async def _placement_view(c: Any, tool: str, nodes: list[str]) -> dict[str, Any]:
    """What the origin's placement sees of ``nodes``: advertised load, its own
    jobs in flight, route cost, link health, and where it would place ``tool``."""
    topo = await c.topology()
    st = await c.stats()
    pl = await c.placement(tool)
    view: dict[str, Any] = {
        "load": {x["id"]: x["load"] for x in topo["nodes"] if x["id"] in nodes},
        "in_flight": st.get("in_flight_by_node", {}),
        "placement": [pl.get("node"), pl.get("score")], "cost_ms": {}, "health": {}}
    for n in nodes:
        r = await c.route(n)
        view["cost_ms"][n] = r.get("total_latency")
        q = await c.query("qos", {"peer": n})
        view["health"][n] = q.get("health_score") if isinstance(q, dict) else None
    return view


async def _candidates(c: Any, tool: str, want: list[str]) -> bool:
    try:
        got = await c.placement(tool)
    except Exception:
        return False
    return sorted(got.get("candidates", [])) == sorted(want)


async def _stats_of(node: BenchNode) -> dict[str, Any] | None:
    try:
        async with node.client() as c:
            st: dict[str, Any] = await c.query("stats", timeout=2.0)
            return st
    except Exception:
        return None


async def _failover(args: argparse.Namespace, work: Path, res: Result, tools: Path) -> None:
    """(b) A job with retries=2 from an origin without workers, running on one of two
    worker nodes: SIGKILL that node's broker and worker (or only its worker); the
    time from the kill to the result from the other node."""
    hb = args.failover_heartbeat
    whb = 1.0  # workers.heartbeat_interval: the default
    liveness = 3  # broker liveness and workers.heartbeat_liveness: the defaults
    env = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": f"{hb:g}", "OPERONE_LOG_LEVEL": "warning"}
    reps = args.reps or 3
    mesh = BenchMesh(work / "failover", ["fo", "fa", "fb"], env)
    pair = ["fa", "fb"]
    times: dict[str, list[float]] = {"broker": [], "worker": []}
    details: list[dict[str, Any]] = []
    origin: Any = None
    try:
        t0 = time.monotonic()
        await mesh.start([("fo", "fa"), ("fo", "fb")])
        await mesh.start_workers({n: ["--tools", str(tools)] for n in pair})
        await mesh.wait_converged()
        origin = await mesh["fo"].client().connect()
        _say(f"failover mesh up in {time.monotonic() - t0:.1f} s")
        for i in range(reps):
            for kind in ("broker", "worker"):
                await wait_until(lambda: _candidates(origin, "bench.hold", pair), 60,
                                 "fo to place bench.hold on fa and fb")
                marker = work / f"hold-{kind}-{i}"
                fut = origin.submit("bench.hold", {"marker": str(marker), "seconds": 30.0},
                                    retries=2, timeout=60)

                async def running_on() -> str:
                    for n in pair:
                        st = await _stats_of(mesh[n])
                        if st and st.get("running"):
                            return n
                    return ""

                first = await wait_until(running_on, 20, "the job to start", step=0.02)
                victim = mesh[first]
                t1 = time.perf_counter()
                if kind == "broker":
                    assert victim.broker is not None
                    victim.broker.kill()
                for w in victim.workers:
                    w.kill()
                try:
                    jr = await asyncio.wait_for(fut, 60)
                except Exception as exc:
                    secs = time.perf_counter() - t1
                    details.append({"kill": kind, "first": first, "error": repr(exc),
                                    "seconds": secs})
                    _say(f"  failover {kind} rep {i + 1}/{reps}: FAILED after {secs:.2f} s:"
                         f" {exc!r}")
                else:
                    secs = time.perf_counter() - t1
                    times[kind].append(secs)
                    details.append({"kill": kind, "first": first, "seconds": secs,
                                    "executed_on": jr.executed_on, "attempts": jr.attempts,
                                    "value": jr.value})
                    _say(f"  failover {kind} rep {i + 1}/{reps}: ran on {first}, killed;"
                         f" result from {jr.executed_on} (attempt {jr.attempts},"
                         f" {jr.value}) after {secs:.2f} s")
                # Bring the node back for the next repetition.
                victim.workers.clear()
                if kind == "broker":
                    await asyncio.to_thread(victim.start_broker)
                await asyncio.to_thread(victim.start_worker, "--tools", str(tools))
    finally:
        if origin is not None:
            with contextlib.suppress(Exception):
                await origin.close()
        mesh.stop()
    bound_b = liveness * hb + 0.05
    row = Row(f"failover, SIGKILL broker+worker (broker heartbeat {hb:g} s)", "s", None,
              _med(times["broker"]), f"<= {bound_b:.2f} s ({liveness} x {hb:g} s + retry)",
              higher_is_better=False, spread=_half_range(times["broker"]))
    row.ok = None if row.operone is None else row.operone <= bound_b
    res.rows.append(row)
    bound_w = liveness * whb + 0.05
    row = Row(f"failover, SIGKILL worker only (worker heartbeat {whb:g} s)", "s", None,
              _med(times["worker"]), f"<= {bound_w:.2f} s ({liveness} x {whb:g} s + retry)",
              higher_is_better=False, spread=_half_range(times["worker"]))
    row.ok = None if row.operone is None else row.operone <= bound_w
    res.rows.append(row)
    failed = [d for d in details if "error" in d]
    if failed:
        res.notes.append(f"{len(failed)} failover repetitions got no result: "
                         + "; ".join(f"{d['kill']}: {d['error'][:160]}" for d in failed))
    wrong = [d for d in details if "error" not in d
             and (d["executed_on"] == d["first"] or d["value"] != "retry")]
    if wrong:
        res.notes.append(f"{len(wrong)} failover results did not come from a retry on the"
                         f" other node: {wrong}")
    res.notes.append(
        f"failover: origin fo (no workers) dials fa and fb (one worker each); a bench.hold"
        f" job (30 s on its first run, instant on a retry) with retries=2; time from the"
        f" SIGKILL to the result; broker.heartbeat_interval={hb:g} s (peer links),"
        f" workers.heartbeat_interval={whb:g} s x liveness {liveness} (the default);"
        f" medians of {reps}; the README's promise: an answer within the heartbeat timeout")
    res.data["failover"] = {"seconds": times, "runs": details,
                            "broker_heartbeat_s": hb, "worker_heartbeat_s": whb}
    _log_notes(res, mesh, prefix="failover (SIGKILLs expected in the logs): ")


async def bench_distributed(args: argparse.Namespace, work: Path) -> Result:
    """map over 3 nodes vs 1 (CPU-bound and sleeping tools), and failover times."""
    res = Result("distributed", columns=("1 node", "3 nodes", "ratio"),
                 noise_note="noise: half the range of the repetitions, relative to the"
                            " median (the worse of the two columns)")
    tools = work / "bench_tools.py"
    tools.write_text(BENCH_TOOLS)
    await _map_scaling(args, work, res, tools)
    await _failover(args, work, res, tools)
    return res


#: Every benchmark set, by name: ``async fn(args, work_dir) -> Result``.
async def _script_set(name: str, argv: list[str]) -> Result:
    """Run one of the stand-alone benchmark scripts; its output becomes notes."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 900)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    result = Result(name)
    result.notes = [line for line in out.decode(errors="replace").splitlines() if line]
    return result


async def bench_qos(args: argparse.Namespace, work: Path) -> Result:
    """QoS: critical-class RTT idle vs with the low class saturated, and the
    achieved file-transfer rate against its 5 MB/s policy (scripts/bench_qos.py)."""
    argv = [sys.executable, str(Path(__file__).with_name("bench_qos.py"))]
    if args.quick:
        argv.append("--quick")
    return await _script_set("qos", argv)


async def bench_inproc(args: argparse.Namespace, work: Path) -> Result:
    """Like for like with the original: client -> broker serving the tool in its
    own process (scripts/bench_inproc.py)."""
    argv = [sys.executable, str(Path(__file__).with_name("bench_inproc.py"))]
    if args.quick:
        argv += ["--jobs", "10000"]
    return await _script_set("inproc", argv)


BENCHMARKS: dict[str, Callable[[argparse.Namespace, Path], Awaitable[Result]]] = {
    "foundation": bench_foundation,
    "routing": bench_routing,
    "mesh": bench_mesh,
    "distributed": bench_distributed,
    "qos": bench_qos,
    "inproc": bench_inproc,
}

#: Hidden sub-commands: the baseline's child processes.
HIDDEN: dict[str, Callable[[list[str]], int]] = {
    "_raw-broker": raw_broker_main,
    "_raw-worker": raw_worker_main,
    "_raw-relay": raw_relay_main,
}


# =====================================================================
# Output
# =====================================================================
def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("", "yes/no"):
        return "yes" if v else "no"
    if unit == "x":
        return f"{v:.2f}x"
    if unit in ("ms", "s") and abs(v) < 10:
        return f"{v:,.2f} {unit}"
    if unit in ("us", "ms", "s", "jobs/s", "msgs") and abs(v) < 100:
        return f"{v:,.1f} {unit}"
    return f"{v:,.0f} {unit}"


def render(res: Result) -> str:
    head = ("metric", *res.columns, "noise", "target", "")
    lines = [head]
    for r in res.rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        noise = "" if r.spread is None else f"±{r.spread * 100:.0f}%"
        status = "" if r.ok is None else ("ok" if r.ok else "MISS")
        lines.append((r.metric, _fmt(r.baseline, r.unit), _fmt(r.operone, r.unit), ratio,
                      noise, r.target, status))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    out = [f"== {res.name}"]
    for j, x in enumerate(lines):
        cells = [x[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(x[1:5], widths[1:5],
                                                                         strict=True)]
        cells += [x[5].ljust(widths[5]), x[6]]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths[:6]))
    out.append(res.noise_note)
    out.extend(f"note: {n}" for n in res.notes)
    return "\n".join(out)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_quiet(limit: float) -> None:
    """Wait up to ``limit`` seconds for the machine to be idle (other work
    below NOISY_LOAD cores over one second)."""
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = machine_busy_seconds(), time.perf_counter()
        time.sleep(1.0)
        b1 = machine_busy_seconds()
        if b0 is None or b1 is None:
            return
        load = (b1 - b0) / (time.perf_counter() - t0)
        if load <= NOISY_LOAD:
            return
        if time.monotonic() > deadline:
            _say(f"the machine is still busy ({load:.2f} cores); measuring anyway")
            return
        _say(f"waiting for the machine to be idle ({load:.2f} cores busy)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in HIDDEN:
        return HIDDEN[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=f"sets: {', '.join(BENCHMARKS)} (default: foundation)")
    parser.add_argument("sets", nargs="*", metavar="SET", help="benchmark sets to run")
    parser.add_argument("--quick", action="store_true", help="fewer jobs and repetitions")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per figure, of which the median (default 5; 3 quick)")
    parser.add_argument("--window", type=int, default=100, help="jobs in flight (throughput)")
    parser.add_argument("--bulk-window", type=int, default=16,
                        help="64 KiB jobs in flight (bulk)")
    parser.add_argument("--worker-concurrency", type=int, default=None,
                        help="operone worker --concurrency (default: the config's, 128)")
    parser.add_argument("--raw-frames", type=int, choices=(1, 2, 3), default=1,
                        help="frames per baseline request: 1 (default, as DESIGN.md's"
                             " baseline), 2, or 3 for operone's shape (tag, header, body)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to leave the"
                             " machine idle (default: do not wait)")
    parser.add_argument("--big", action="store_true",
                        help="routing: also simulate 10,000 nodes (~6 minutes on 2 cores,"
                             " ~4.4 GB)")
    parser.add_argument("--failover-heartbeat", type=float, default=0.2, metavar="SECONDS",
                        help="distributed: broker.heartbeat_interval of the failover"
                             " nodes (default 0.2)")
    parser.add_argument("--json", type=Path, help="also save every figure here")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run operone's broker and worker under cProfile and profile"
                             " its client; .prof files go to DIR (figures get slower)")
    args = parser.parse_args(argv)
    sets = args.sets or ["foundation"]
    unknown = [s for s in sets if s not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        parser.error(f"--profile: {args.profile} exists and is not a directory")
    if sys.platform == "win32":
        parser.error("the benchmarks need ipc:// and add_reader (Linux or macOS)")

    # SIGTERM unwinds like Ctrl-C, so every child process is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    results: list[Result] = []
    t0 = time.monotonic()
    try:
        for name in sets:
            with tempfile.TemporaryDirectory(prefix=f"operone-bench-{name}-") as tmp:
                _say(f"running {name} ...")
                results.append(asyncio.run(BENCHMARKS[name](args, Path(tmp))))
    except KeyboardInterrupt:
        _say("interrupted; every process it started is stopped")
        return 130
    except (RuntimeError, TimeoutError) as exc:  # a child failed to start or a phase hung
        _say(f"error: {exc}")
        return 1
    elapsed = time.monotonic() - t0
    import operone_zmq

    source = str(Path(operone_zmq.__file__).parent)
    print(f"operone-zmq benchmarks: {platform.node()}, {os.cpu_count()} CPUs,"
          f" Python {platform.python_version()}, pyzmq {zmq.__version__},"
          f" libzmq {zmq.zmq_version()}, {elapsed:.0f} s; operone_zmq from {source}")
    for r in results:
        print()
        print(render(r))
    if args.profile is not None:
        for what in ("broker", "worker", "client"):
            f = args.profile / f"{what}.prof"
            if f.exists():
                print(f"\n== cProfile, {what} (top 15 by own time)")
                st = pstats.Stats(str(f), stream=sys.stdout)
                st.sort_stats("tottime").print_stats(15)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "operone_zmq": source,
            "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "pyzmq": zmq.__version__,
                        "libzmq": zmq.zmq_version()},
            "elapsed_s": elapsed,
            "sets": {r.name: {"rows": [{**r_.__dict__, "ratio": r_.ratio} for r_ in r.rows],
                              "notes": r.notes, "data": r.data} for r in results},
        }, indent=2, default=str))
        print(f"\nsaved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
