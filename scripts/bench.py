#!/usr/bin/env python3
"""Benchmarks of operone-zmq, each measured against a baseline run at the same time.

DESIGN.md section 11 states the targets as ratios against a raw pyzmq
baseline of the same shape, so a figure is only meaningful next to a
baseline measured in the same run on the same machine::

    python scripts/bench.py                      # the foundation set
    python scripts/bench.py foundation --quick   # a shorter run
    python scripts/bench.py --json out.json      # also save every figure
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
a busy machine is named in the notes.  Later sets (``mesh``, ``qos``,
``routing``) plug into :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import platform
import pstats
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

#: Messages taken from one socket per drain run (as operone's Pump does).
BATCH = 256
#: Socket high-water marks of the raw stack (operone's SocketLimits default).
HWM = 10_000
#: Seconds any child process may take to say it is ready.
START_TIMEOUT = 30.0
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
# Child processes
# =====================================================================
class Child:
    """A child process with its output in a log file, always stopped:
    SIGTERM, then SIGKILL after a timeout."""

    def __init__(self, name: str, argv: list[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                  env=env, stdin=subprocess.DEVNULL)

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

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._out.close()
        return self.p.returncode

    def complaints(self) -> list[str]:
        """What the child printed: a benchmark's processes should print nothing
        (operone logs at warning level here), so any line is worth a look."""
        try:
            return self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def free_base_port(span: int = 4) -> int:
    """A base port with ``span`` consecutive free TCP ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        socks: list[socket.socket] = []
        try:
            for i in range(span):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free port range found")


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
        self.client = RawClient(int(info["port"]), pub, self.frames)

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


@dataclass
class Result:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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


#: Every benchmark set, by name: ``async fn(args, work_dir) -> Result``.
BENCHMARKS: dict[str, Callable[[argparse.Namespace, Path], Awaitable[Result]]] = {
    "foundation": bench_foundation,
}

#: Hidden sub-commands: the baseline's child processes.
HIDDEN: dict[str, Callable[[list[str]], int]] = {
    "_raw-broker": raw_broker_main,
    "_raw-worker": raw_worker_main,
}


# =====================================================================
# Output
# =====================================================================
def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "us" and v < 100:
        return f"{v:,.1f} us"
    return f"{v:,.0f} {unit}"


def render(res: Result) -> str:
    head = ("metric", "baseline", "operone", "operone/base", "noise", "target", "")
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
    out.append("noise: half the range of the repetitions, relative to the median"
               " (the worse of the two stacks)")
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
                        help="operone worker --concurrency (default: the config's, 64)")
    parser.add_argument("--raw-frames", type=int, choices=(1, 2, 3), default=1,
                        help="frames per baseline request: 1 (default, as DESIGN.md's"
                             " baseline), 2, or 3 for operone's shape (tag, header, body)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to leave the"
                             " machine idle (default: do not wait)")
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
