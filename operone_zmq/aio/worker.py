"""Worker: the asyncio/ZeroMQ shell of WorkerCore; runs tools.

One DEALER to the local broker.  Async tools run as tasks on the loop; cheap
``inline`` tools run right in the receive loop (no task, no thread: this is
what makes no-op jobs fast); every other sync tool runs in a bounded thread
pool.  When the broker goes silent the socket is replaced and the worker
registers again.

A worker started by a supervisor (``parent_pid``) stops when that process is
no longer its parent, so it never outlives its node (see aio/supervisor.py).
While the broker stays away the worker keeps re-dialling, but logs
``broker_lost`` once and then ``broker_still_lost`` at most every
:data:`LOST_LOG_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
import time
from typing import Any, Final

import structlog
import zmq

from ..core.worker import JobStart, WorkerCore
from ..errors import JobError, ProtocolError, ToolNotFound
from ..protocol.batch import MIN_SIZE_TO_BATCH, decode_batch, is_batch, pack_messages
from ..protocol.bodies import Progress
from ..protocol.frame import Frame
from ..tools import ToolContext, ToolRegistry, ToolsConfig
from .pump import Pump
from .sockets import CurveKeys, SocketLimits, make_socket
from .supervisor import parent_alive

__all__ = ["Worker"]

log: Final = structlog.get_logger("operone.worker")

#: Seconds between ``broker_still_lost`` warnings while the broker stays away:
#: a worker without a broker for a day logs about 1,440 lines, not 86,400.
LOST_LOG_INTERVAL: Final = 60.0

#: Bytes of streamed output (PROGRESS ``data``) one job may send: the 4 MiB a
#: shell job keeps of each stream (``tools.max_output``' default), so asking
#: for streaming never moves more than asking for the result (a streamed
#: ``cat /dev/zero`` pushed 574-768 MB in 1.5 s).  Past it, one PROGRESS says
#: so and the rest is not streamed.
MAX_STREAM_BYTES: Final = 4 * 1024 * 1024
#: Streamed bytes per second per job, and the burst allowed above it.  1 MiB/s
#: is far more than anyone reads as it scrolls, and bounds what a job streams
#: into the broker's and the client's queues.  A tool thread that streams
#: faster waits (its child blocks on a full pipe: nothing is lost); a stream
#: from the event loop's own thread past the rate is dropped instead.
STREAM_RATE: Final = 1024 * 1024
STREAM_BURST: Final = 256 * 1024


class Worker:
    """A worker process's engine: registers tools with a broker and runs jobs."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        registry: ToolRegistry,
        *,
        tools_config: ToolsConfig | None = None,
        caps: tuple[str, ...] = (),
        slots: int = 64,
        threads: int = 8,
        heartbeat_interval: float = 1.0,
        liveness: int = 3,
        curve: CurveKeys | None = None,
        socket_limits: SocketLimits | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.registry = registry
        self.tools_config = tools_config or ToolsConfig()
        self._caps = caps
        self._slots = slots
        self._threads = threads
        self._interval = heartbeat_interval
        self._liveness = liveness
        self._curve = curve
        self._socket_limits = socket_limits or SocketLimits()
        self._parent_pid = parent_pid
        #: The broker on this connection sent a BATCH, so it accepts them:
        #: our messages of one run go batched too (reset on a new connection).
        self._batch_ok = False
        self._lost_since: float | None = None
        self._lost_logged = 0.0
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._pump: Pump | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running: dict[str, tuple[ToolContext, asyncio.Future[Any] | None]] = {}
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.core = self._new_core(time.monotonic())
        self._log = log.bind(worker=name)
        # Handed to tools that take no ctx (prepare() ignores it for them).
        self._no_ctx = ToolContext(job_id="", node="", config=self.tools_config)

    def _new_core(self, now: float) -> WorkerCore:
        infos = self.registry.infos()
        return WorkerCore(self.name, infos, caps=self._caps, slots=self._slots, pid=os.getpid(),
                          heartbeat_interval=self._interval, liveness=self._liveness, now=now,
                          batch=self._socket_limits.max_message_size >= MIN_SIZE_TO_BATCH)

    def _socket(self) -> zmq.Socket[bytes]:
        if self._ctx is None:  # pragma: no cover - guarded by start()
            raise RuntimeError("worker is not started")
        s = make_socket(self._ctx, zmq.DEALER, limits=self._socket_limits,
                        curve=self._curve if self.endpoint.startswith("tcp") else None,
                        identity=self.name.encode())
        s.connect(self.endpoint)
        return s

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect to the broker and register."""
        if self._pump is not None:
            return
        self._loop = loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix=f"{self.name}-tool")
        now = time.monotonic()
        self.core = self._new_core(now)
        self._pump = Pump(loop, self._on_message, self._after_run,
                          max_bytes=self._socket_limits.max_message_size)
        self._pump.add(self._socket())
        self._stopped = asyncio.Event()
        self.core.start(now)
        self._flush()
        self._schedule(now)
        self._log.info("worker_started", endpoint=self.endpoint, tools=self.registry.names())

    async def stop(self, reason: str = "the worker is shutting down") -> None:
        """Tell the broker, stop running jobs, close.  Safe to call twice."""
        pump = self._pump
        if pump is None:
            return
        self.core.disconnect(reason)
        self._flush()
        self._pump = None
        if self._timer is not None:
            self._timer.cancel()
        for ctx, fut in self._running.values():
            ctx.cancelled.set()
            if fut is not None:
                fut.cancel()
        self._running.clear()
        pump.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._stopped is not None:
            self._stopped.set()
        self._log.info("worker_stopped")

    async def wait_stopped(self) -> None:
        """Return once :meth:`stop` has run."""
        if self._stopped is not None:
            await self._stopped.wait()

    # -------------------------------------------------------------- pumping
    def _on_message(self, idx: int, frames: list[Frame], now: float,
                    uid: str | None = None) -> None:
        if is_batch(frames):
            try:
                msgs = decode_batch(frames)
            except ProtocolError:
                self.core.counters["malformed"] += 1
                return
            self._batch_ok = True
            for m in msgs:
                self._on_one(m, now)
            self._flush()  # its answers leave now, batched (see aio/broker.py)
        else:
            self._on_one(frames, now)

    def _on_one(self, frames: list[Frame], now: float) -> None:
        was = self.core.connected
        action = self.core.on_broker(frames, now)
        if was and not self.core.connected:
            self._batch_ok = False  # DISCONNECT: the broker we register with next may be older
        if action is None:
            return
        if isinstance(action, str):
            self._stop_job(action)
        else:
            self._start_job(action, now)

    def _flush(self) -> None:
        pump = self._pump
        out = self.core.out
        if pump is None or not out:
            out.clear()
            return
        for frames in pack_messages(out) if self._batch_ok and len(out) > 1 else out:
            pump.send(0, frames)
        out.clear()

    def _after_run(self, now: float) -> None:
        self._flush()

    def _schedule(self, now: float) -> None:
        loop = self._loop
        if loop is None or self._pump is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        at = self.core.next_deadline()
        self._timer = loop.call_at(loop.time() + max(0.0, at - now), self._tick)

    def _tick(self) -> None:
        self._timer = None
        pump = self._pump
        if pump is None:
            return
        now = time.monotonic()
        if self._parent_pid is not None and not parent_alive(self._parent_pid):
            self._log.warning("supervisor_gone", parent=self._parent_pid)
            if self._loop is not None:
                self._loop.create_task(self.stop("the worker's supervisor is gone"))
            return
        stop, lost = self.core.tick(now)
        for jid in stop:
            self._stop_job(jid)
        if self.core.connected:
            self._lost_since = None
        if lost:
            self._log_lost(now)
            self._batch_ok = False  # the broker we reach next may be another
            pump.replace(0, self._socket())
            self.core.start(now)
        self._flush()
        pump.kick()
        self._schedule(now)

    def _log_lost(self, now: float) -> None:
        if self._lost_since is None:
            self._lost_since = self._lost_logged = now
            self._log.warning("broker_lost", endpoint=self.endpoint)
        elif now - self._lost_logged >= LOST_LOG_INTERVAL:
            self._lost_logged = now
            self._log.warning("broker_still_lost", endpoint=self.endpoint,
                              seconds=round(now - self._lost_since))

    # ------------------------------------------------------------ execution
    def _start_job(self, job: JobStart, now: float) -> None:
        core = self.core
        try:
            spec = self.registry.get(job.tool)
        except ToolNotFound:
            core.fail(job.id, ToolNotFound(f"no tool named '{job.tool}' on worker '{self.name}'",
                                           job_id=job.id, node=core.node), now)
            return
        if spec.inline and not spec.wants_ctx:
            # The fast path (echo and friends): no context, no thread, no task.
            try:
                value = spec.prepare(job.args, self._no_ctx)()
            except Exception as exc:
                core.fail(job.id, exc, now)
            else:
                core.done(job.id, value, now)
            return
        ctx = ToolContext(job_id=job.id, node=core.node, config=self.tools_config,
                          deadline=job.deadline,
                          progress=self._progress_hook(job.id))
        if job.stream:
            ctx.stream = self._stream_hook(job.id)
        try:
            call = spec.prepare(job.args, ctx)
        except JobError as err:
            core.fail(job.id, err, now)
            return
        loop = self._loop
        if loop is None:  # pragma: no cover
            return
        if spec.is_async:
            task: asyncio.Future[Any] = loop.create_task(call())
            self._running[job.id] = (ctx, task)
            task.add_done_callback(functools.partial(self._finished, job.id))
        elif spec.inline:
            try:
                value = call()
            except Exception as exc:
                core.fail(job.id, exc, now)
            else:
                core.done(job.id, value, now)
        else:
            fut = loop.run_in_executor(self._pool, call)
            self._running[job.id] = (ctx, fut)
            fut.add_done_callback(functools.partial(self._finished, job.id))

    def _finished(self, jid: str, fut: asyncio.Future[Any]) -> None:
        self._running.pop(jid, None)
        now = time.monotonic()
        if fut.cancelled():
            return  # stopped by a timeout or CANCEL: the core answered already
        exc = fut.exception()
        if exc is not None:
            if not isinstance(exc, JobError):
                job = self.core.running.get(jid)
                self._log.warning("tool_raised", job=jid, tool=job.tool if job else None,
                                  error=f"{type(exc).__name__}: {exc}")
            self.core.fail(jid, exc, now)
        else:
            self.core.done(jid, fut.result(), now)
        self._flush()
        if self._pump is not None:
            self._pump.kick()

    def _stop_job(self, jid: str) -> None:
        entry = self._running.pop(jid, None)
        if entry is None:
            return
        ctx, fut = entry
        ctx.cancelled.set()
        if fut is not None:
            fut.cancel()

    def _progress_hook(self, jid: str) -> Any:
        loop = self._loop

        def report(fraction: float | None, message: str | None) -> None:
            p = Progress(fraction=None if fraction is None else max(0.0, min(1.0, fraction)),
                         message=message)
            if loop is None or loop.is_closed():
                return
            loop.call_soon_threadsafe(self._send_progress, jid, p)

        return report

    def _stream_hook(self, jid: str) -> Any:
        loop = self._loop
        loop_thread = threading.get_ident()
        lock = threading.Lock()
        # [bytes streamed, tokens, time of the last refill]
        state = [0, float(STREAM_BURST), time.monotonic()]

        def stream(name: str, data: str) -> None:
            if loop is None or loop.is_closed() or name not in ("stdout", "stderr"):
                return
            data = data[: 1 << 20]
            with lock:
                sent = int(state[0])
                if sent >= MAX_STREAM_BYTES:
                    return
                left = MAX_STREAM_BYTES - sent
                if len(data) >= left:
                    data = data[:left]
                size = len(data.encode("utf-8", "replace"))
                now = time.monotonic()
                tokens = min(float(STREAM_BURST), state[1] + (now - state[2]) * STREAM_RATE)
                state[2] = now
                wait = (size - tokens) / STREAM_RATE if size > tokens else 0.0
                if wait and threading.get_ident() == loop_thread:
                    state[1] = tokens
                    return  # never sleep on the loop: drop this piece
                state[1] = tokens - size
                state[0] = sent + size
                capped = state[0] >= MAX_STREAM_BYTES
            if wait:
                time.sleep(wait)  # a tool thread: pace it
            if loop.is_closed():
                return
            loop.call_soon_threadsafe(self._send_progress, jid,
                                      Progress(stream=name, data=data))
            if capped:
                loop.call_soon_threadsafe(self._send_progress, jid, Progress(
                    message=f"streamed output stopped at {MAX_STREAM_BYTES} bytes"
                            " (the limit per job); the rest is not streamed"))

        return stream

    def _send_progress(self, jid: str, p: Progress) -> None:
        self.core.progress(jid, p)
        self._flush()
        if self._pump is not None:
            self._pump.kick()
