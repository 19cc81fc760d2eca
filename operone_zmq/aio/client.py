"""AsyncClient and Client: submit jobs to a broker and read cluster state.

The client keeps one CurveZMQ DEALER per priority class it uses (to the
broker's frontend of that class) and a table of pending requests keyed by id:
each ends exactly once, with the broker's RESULT/REPLY, its ERROR, or the
local deadline (timeout plus a grace period, so the broker's own timeout
error normally arrives first).

A socket monitor watches each DEALER: when the broker refuses our key during
the CurveZMQ handshake, pending and new requests fail at once with
:class:`~operone_zmq.errors.AuthenticationError` instead of timing out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..core.broker import CLASS_NAMES
from ..core.client import ClientCore, JobResult
from ..errors import (
    AuthenticationError,
    BrokerRestarted,
    BrokerUnreachable,
    JobCancelled,
    JobTimeout,
    MessageTooLarge,
    Overloaded,
    ProtocolError,
)
from ..protocol.batch import (
    MAX_BATCHED_MESSAGE,
    MIN_SIZE_TO_BATCH,
    decode_batch,
    is_batch,
    pack_messages,
)
from ..protocol.bodies import Progress
from ..protocol.frame import Frame
from .futures import ClientJobFuture, JobFuture, windowed
from .pump import MAX_PENDING, Pump
from .sockets import CurveKeys, SocketLimits, make_socket
from .transfer import TransferResult, copy_file

__all__ = ["AsyncClient", "Client", "ClientJobFuture", "JobFuture", "JobResult",
           "parse_priority"]

#: Seconds the client waits past a job's timeout for the broker's answer
#: before it gives up on its own (the broker normally answers first).
GRACE: Final = 2.0

#: Default job timeout when the caller names none.
# (Not Final: as the default of AsyncClient's parameter after keyword-only ones
# without a default, mypyc (2.4) fails writing its text signature.)
DEFAULT_TIMEOUT = 60.0

#: Requests in flight per client; past it submit() raises Overloaded.  Bounds
#: the pending table, the way each broker queue is bounded.
MAX_IN_FLIGHT: Final = 100_000


_CLASS_OF_NAME: Final = {name: i for i, name in enumerate(CLASS_NAMES)}


def parse_priority(priority: str | int) -> int:
    """Priority class index from a name ("critical".."low") or 0..3."""
    if type(priority) is str:
        c = _CLASS_OF_NAME.get(priority)
        if c is not None:
            return c
    if isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 3:
        return priority
    if isinstance(priority, str) and priority.lower() in CLASS_NAMES:
        return CLASS_NAMES.index(priority.lower())
    raise ValueError(f"priority must be one of {', '.join(CLASS_NAMES)} (or 0..3), not"
                     f" {priority!r}")


def _home_settings(path: str | os.PathLike[str] | None, broker: str | None,
                   server_key: str | None) -> dict[str, Any]:
    """host, base_port, keys and client_id of a client of the node whose home
    is ``path`` (default: $OPERONE_HOME, else the platform's default home)."""
    from ..config import Home, load_config
    from ..errors import ConfigError
    from ..security.keys import load_keypair, parse_public_key

    home = Home(Path(path).expanduser()) if path is not None else Home.default()
    config = load_config(home)
    if not home.node_secret.exists():
        raise ConfigError(f"no node key at {home.node_secret}: run 'operone init' first"
                          f" (home: {home.path})")
    kp = load_keypair(home.node_secret)
    if kp.secret is None:
        raise ConfigError(f"{home.node_secret} holds no secret key")
    server = parse_public_key(server_key) if server_key else kp.public
    if broker:
        h, _, port = broker.rpartition(":")
        if not h or not port.isdigit():
            raise ConfigError(f"broker must be HOST:PORT, not {broker!r}")
        host, base_port = h.strip("[]"), int(port)
    else:
        host = config.node.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base_port = config.node.base_port
    return {"host": host, "base_port": base_port,
            "keys": CurveKeys(kp.public, kp.secret, server),
            "client_id": f"{config.node.id}.{socket.gethostname()[:16]}"}


@dataclass(slots=True, init=False)
class _Pending:
    fut: asyncio.Future[Any]
    deadline: float
    cls: int
    is_job: bool
    on_progress: Callable[[Progress], None] | None
    sent: float
    #: The JOB's frames, kept to submit it again when the broker restarts
    #: (idempotent jobs only; None otherwise).
    frames: list[Frame] | None
    resubmitted: int

    # (One per request: compiled by mypyc, a dataclass's generated __init__
    # stays interpreted, 6x the cost of this one.)
    def __init__(self, fut: asyncio.Future[Any], deadline: float, cls: int, is_job: bool,
                 on_progress: Callable[[Progress], None] | None, sent: float,
                 frames: list[Frame] | None = None, resubmitted: int = 0) -> None:
        self.fut = fut
        self.deadline = deadline
        self.cls = cls
        self.is_job = is_job
        self.on_progress = on_progress
        self.sent = sent
        self.frames = frames
        self.resubmitted = resubmitted


#: Seconds between the PINGs a client with jobs in flight sends its broker:
#: the PONG says the broker's incarnation, so a restart is seen within this.
WATCH_INTERVAL: Final = 1.0

#: Times one job is submitted again after restarts of the broker.
MAX_RESUBMITS: Final = 3

#: Times a resubmitted job is sent again, a watch interval apart, while the
#: restarted broker says no worker offers its tool (they register again
#: within liveness x heartbeat interval: 3 s by default).
MAX_STARTING_RESENDS: Final = 10


class AsyncClient:
    """Asyncio client of one broker.

    While jobs are in flight it PINGs the broker every
    :data:`WATCH_INTERVAL`; a PONG (or any PONG) naming another incarnation
    than before means the broker restarted and forgot them: an idempotent
    job is submitted again with the same id (a target that finished it
    answers from its result cache), others fail at once with
    :class:`~operone_zmq.errors.BrokerRestarted`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        base_port: int = 7700,
        *,
        keys: CurveKeys,
        client_id: str | None = None,
        default_timeout: float = DEFAULT_TIMEOUT,
        socket_limits: SocketLimits | None = None,
    ) -> None:
        if keys.server is None:
            raise ValueError("keys.server (the broker's public key) is required")
        self.host = host
        self.base_port = base_port
        self._keys = keys
        self.default_timeout = default_timeout
        self._socket_limits = socket_limits or SocketLimits()
        self.core = ClientCore(client_id)
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._pump: Pump | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock_of_cls: dict[int, int] = {}
        self._monitor_of: dict[int, int] = {}
        self._auth_failed: dict[int, str] = {}
        self._heard: set[int] = set()
        #: class -> requests of this pump run, sent batched at its end (only
        #: while the broker accepts BATCH; bounded with the send queue by
        #: MAX_PENDING, see _enqueue).
        self._outbox: dict[int, list[list[Frame]]] = {}
        #: A request went at once since the last pump run (see _enqueue).
        self._sent_alone = False
        #: Our own message size limit allows BATCHes (the broker sends us
        #: some only after we sent one).
        self._can_batch = self._socket_limits.max_message_size >= MIN_SIZE_TO_BATCH
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._watch: asyncio.TimerHandle | None = None
        #: The broker's incarnation, from its PONGs (None: not heard yet).
        self.broker_incarnation: int | None = None
        self.restarts_seen = 0

    @classmethod
    def from_home(cls, path: str | os.PathLike[str] | None = None, *,
                  broker: str | None = None, server_key: str | None = None,
                  **kw: Any) -> AsyncClient:
        """A client of the node whose home is ``path`` (default: $OPERONE_HOME,
        else ~/.config/operone): its keys, and its broker's address from its
        config (``broker`` = "HOST:PORT" and ``server_key`` for another one).
        Use it with ``async with``."""
        return cls(**{**_home_settings(path, broker, server_key), **kw})

    # ------------------------------------------------------------ lifecycle
    async def connect(self) -> AsyncClient:
        """Open the client (sockets connect lazily, per priority class)."""
        if self._pump is None:
            self._loop = asyncio.get_running_loop()
            self._ctx = zmq.Context()
            self._pump = Pump(self._loop, self._on_message, self._after_run,
                              max_bytes=self._socket_limits.max_message_size)
        return self

    async def close(self) -> None:
        """Fail whatever is pending and close the sockets.  Safe to call twice."""
        pump = self._pump
        if pump is None:
            return
        self._pump = None
        if self._timer is not None:
            self._timer.cancel()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for p in self._pending.values():
            if not p.fut.done():
                p.fut.set_exception(BrokerUnreachable("the client was closed"))
        self._pending.clear()
        pump.close()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _endpoint(self, cls: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.base_port + cls}"

    def _sock_index(self, cls: int) -> int:
        idx = self._sock_of_cls.get(cls)
        if idx is not None:
            return idx
        pump, ctx = self._pump, self._ctx
        if pump is None or ctx is None:
            raise RuntimeError("the client is not connected: use 'async with' or connect()")
        s = make_socket(ctx, zmq.DEALER, limits=self._socket_limits, curve=self._keys)
        if ":" in self.host:
            s.setsockopt(zmq.IPV6, 1)
        idx = pump.add(s)
        mon = pump.add_monitor(
            idx, zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self._monitor_of[mon] = cls
        s.connect(self._endpoint(cls))
        self._sock_of_cls[cls] = idx
        return idx

    # ------------------------------------------------------------ requests
    def submit(
        self,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        on: str | None = None,
        capabilities: Iterable[str] = (),
        priority: str | int = "normal",
        timeout: float | None = None,
        retries: int = 0,
        idempotent: bool = True,
        prefer_local: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> JobFuture:
        """Submit a job; the future (its ``job_id`` known at once) resolves to
        a :class:`JobResult` or raises the job's typed error.  Cancelling the
        future cancels the job.  ``timeout``: one deadline for the job, all
        its attempts included.

        ``on``: run on that node; otherwise the broker places the job on the
        best node offering ``tool`` and ``capabilities`` (``prefer_local``:
        here when it can).  ``retries``: attempts on other nodes after a
        worker or node failure (never after it may have started, when
        ``idempotent`` is False).  ``on_progress``: called with progress
        reports and, for tools that stream (``shell``), their output."""
        cls = parse_priority(priority)
        t = self.default_timeout if timeout is None else float(timeout)
        # (args is packed here and not kept: a dict needs no copy.)
        jid, frames = self.core.job(tool, args if type(args) is dict else dict(args or {}),
                                    cls=cls, timeout=t, on=on,
                                    caps=tuple(capabilities) if capabilities else (),
                                    retries=retries, idempotent=idempotent,
                                    prefer_local=prefer_local, stream=on_progress is not None)
        # The broker holds the job to one deadline across its attempts; the
        # local deadline is that one (plus the grace for its answer).
        fut = self._send(jid, cls, frames, t, is_job=True, on_progress=on_progress,
                         keep=idempotent)
        assert isinstance(fut, JobFuture)
        return fut

    async def run(self, tool: str, args: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """Run a job and return its value."""
        res: JobResult = await self.submit(tool, args, **kw)
        return res.value

    async def map(
        self, tool: str, args_list: Iterable[Mapping[str, Any]], *, concurrency: int = 100,
        **kw: Any,
    ) -> list[Any]:
        """Run ``tool`` once per argument map, at most ``concurrency`` at a time;
        values in input order.  The first error is raised (the rest still run
        to completion or their timeout)."""
        results = [r async for r in windowed(self.submit, tool, args_list, concurrency, kw)]
        results.sort(key=lambda r: r[0])
        out: list[Any] = []
        for _, r in results:
            if isinstance(r, BaseException):
                raise r
            out.append(r.value)
        return out

    def as_completed(
        self, tool: str, args_list: Iterable[Mapping[str, Any]], *, concurrency: int = 100,
        **kw: Any,
    ) -> AsyncIterator[tuple[int, JobResult | BaseException]]:
        """Yield ``(index, result or error)`` as jobs finish (``async for``)."""
        return windowed(self.submit, tool, args_list, concurrency, kw)

    async def query(self, what: str, args: Mapping[str, Any] | None = None,
                    timeout: float = 10.0) -> Any:
        """Ask the broker (QUERY) and return its REPLY value."""
        qid, frames = self.core.query(what, dict(args or {}), cls=0)
        return await self._send(qid, 0, frames, timeout, is_job=False, grace=0.0)

    async def stats(self) -> dict[str, Any]:
        """The broker's counters (``operone stats``)."""
        s: dict[str, Any] = await self.query("stats")
        return s

    async def workers(self) -> list[dict[str, Any]]:
        """The broker's registered workers."""
        w: list[dict[str, Any]] = await self.query("workers")
        return w

    async def tools(self) -> dict[str, int]:
        """Tools offered on the broker's node, with the number of workers each."""
        t: dict[str, int] = await self.query("tools")
        return t

    async def ping(self, timeout: float = 5.0) -> str:
        """Round-trip to the broker; returns its node id."""
        r: dict[str, str] = await self.query("ping", timeout=timeout)
        return r["node"]

    async def cancel_remote(self, job_id: str, reason: str = "") -> bool:
        """Cancel job ``job_id`` submitted to this broker by any client."""
        r: dict[str, Any] = await self.query("cancel", {"job": job_id, "reason": reason})
        return bool(r.get("cancelled"))

    async def placement(self, tool: str, capabilities: Iterable[str] = (),
                        prefer_local: bool = False) -> dict[str, Any]:
        """Where the broker would run ``tool`` now, and why (ToolRouter.route)."""
        r: dict[str, Any] = await self.query("placement", {
            "tool": tool, "caps": list(capabilities), "prefer_local": prefer_local})
        return r

    async def qos(self, peer: str, allocate: float | None = None) -> dict[str, Any]:
        """QoS metrics of the broker's link to ``peer`` (latency, jitter, loss,
        bandwidth, health 0-100); ``allocate`` MB/s sets its budget (0: none)."""
        args: dict[str, Any] = {"peer": peer}
        if allocate is not None:
            args["allocate"] = allocate
        r: dict[str, Any] = await self.query("qos", args)
        return r

    async def copy_file(self, local: str, node: str, remote: str,
                        **kw: Any) -> TransferResult:
        """Copy a local file to ``node``:``remote`` (see operone_zmq.aio.transfer)."""
        return await copy_file(self, local, node, remote, **kw)

    async def peers(self) -> list[dict[str, Any]]:
        """The broker's peer links."""
        p: list[dict[str, Any]] = await self.query("peers")
        return p

    async def topology(self) -> dict[str, Any]:
        """The mesh's link-state graph as the broker sees it (nodes, edges)."""
        t: dict[str, Any] = await self.query("topology")
        return t

    async def route(self, dest: str) -> dict[str, Any]:
        """The broker's route to node ``dest``."""
        r: dict[str, Any] = await self.query("route", {"dest": dest})
        return r

    async def network_stats(self) -> dict[str, Any]:
        """Mesh statistics: nodes, connections, hops, latency, diameter, partitions."""
        n: dict[str, Any] = await self.query("network")
        return n

    async def connect_peer(self, node: str, host: str, port: int) -> dict[str, Any]:
        """Ask the broker to link to broker ``node`` at ``host:port``."""
        r: dict[str, Any] = await self.query("connect", {"node": node, "host": host,
                                                         "port": port})
        return r

    async def broadcast(self, data: Any, timeout: float = 10.0) -> int:
        """Send ``data`` to every broker of the mesh (each delivers it once as a
        ``message`` event); returns how many neighbours the broker sent it to."""
        bid, frames = self.core.broadcast(data)
        r: dict[str, Any] = await self._send(bid, 0, frames, timeout, is_job=False, grace=0.0)
        return int(r.get("neighbours", 0))

    def cancel(self, job_id: str, reason: str = "cancelled by the client") -> bool:
        """Ask the broker to stop ``job_id``; True when it was pending here."""
        p = self._pending.get(job_id)
        if p is None:
            return False
        if not p.fut.done():
            p.fut.cancel()  # the done-callback sends CANCEL
        return True

    # ------------------------------------------------------------- plumbing
    def _send(
        self, rid: str, cls: int, frames: list[Frame], timeout: float, *, is_job: bool,
        on_progress: Callable[[Progress], None] | None = None, grace: float = GRACE,
        keep: bool = False,
    ) -> asyncio.Future[Any]:
        pump, loop = self._pump, self._loop
        if pump is None or loop is None:
            raise RuntimeError("the client is not connected: use 'async with' or connect()")
        fut: asyncio.Future[Any]
        if is_job:
            job = JobFuture(loop=loop)
            job.job_id = rid
            # Not a done-callback: one per job costs a loop callback per job,
            # and only a cancel needs anything done (a future that failed
            # before it was sent is done: cancel() then calls nothing).
            job._on_cancel = self._job_cancelled
            job._cls = cls
            fut = job
        else:
            fut = loop.create_future()
        refused = self._auth_failed.get(cls)
        if refused is not None:
            fut.set_exception(AuthenticationError(refused))
            return fut
        size = sum(map(len, frames))
        if size > self._socket_limits.max_message_size:
            fut.set_exception(MessageTooLarge(
                f"the request is {size} bytes; the limit is"
                f" {self._socket_limits.max_message_size} (limits.max_message_size):"
                " send big data in pieces"))
            return fut
        if len(self._pending) >= MAX_IN_FLIGHT:
            fut.set_exception(Overloaded(f"{MAX_IN_FLIGHT} requests already in flight"))
            return fut
        idx = self._sock_index(cls)
        now = time.monotonic()
        deadline = now + timeout + grace
        if not self._enqueue(cls, idx, frames, now):
            fut.set_exception(Overloaded("the send queue to the broker is full"))
            return fut
        self._pending[rid] = _Pending(fut, deadline, cls, is_job, on_progress, now,
                                      frames if keep else None)
        heapq.heappush(self._deadlines, (deadline, rid))
        if deadline < self._timer_at:
            self._arm(deadline, now)
        if is_job and self._watch is None:
            # The first PING goes at once: a restart is a change from the
            # incarnation seen before it.
            first = self.broker_incarnation is None
            self._watch = loop.call_later(0.0 if first else WATCH_INTERVAL, self._watchdog)
        return fut

    def _job_cancelled(self, rid: str, cls: int) -> None:
        """A job's future was cancelled (by its caller, or a task awaiting it)."""
        p = self._pending.pop(rid, None)
        if p is not None and self._pump is not None:
            # After the JOB, which may still wait in the outbox.
            self._enqueue(cls, self._sock_index(cls), self.core.cancel(rid, cls=cls),
                          time.monotonic())
            self._pump.kick()

    def _watchdog(self) -> None:
        """PING the broker on each class with jobs in flight."""
        self._watch = None
        pump, loop = self._pump, self._loop
        if pump is None or loop is None:
            return
        classes = {p.cls for p in self._pending.values() if p.is_job}
        if not classes:
            return
        for cls in classes:
            pump.send(self._sock_index(cls), self.core.ping(cls)[1])
        pump.kick()
        self._watch = loop.call_later(WATCH_INTERVAL, self._watchdog)

    def _resend(self, rid: str) -> None:
        p = self._pending.get(rid)
        if p is not None and p.frames is not None and self._pump is not None \
                and not p.fut.done():
            self._pump.send(self._sock_index(p.cls), p.frames)
            self._pump.kick()

    def _on_incarnation(self, inc: int) -> None:
        """A PONG named the broker's incarnation ``inc``."""
        if not inc:
            return
        old = self.broker_incarnation
        self.broker_incarnation = inc
        if old is None or old == inc:
            return
        self.restarts_seen += 1
        pump = self._pump
        for rid, p in list(self._pending.items()):
            if not p.is_job or p.fut.done():
                continue
            if p.frames is not None and p.resubmitted < MAX_RESUBMITS and pump is not None:
                p.resubmitted += 1
                pump.send(self._sock_index(p.cls), p.frames)
                continue
            del self._pending[rid]
            p.fut.set_exception(BrokerRestarted(
                f"the broker at {self._endpoint(p.cls)} restarted while job '{rid}' was"
                " in progress there; the job is lost (it was not idempotent, so it was not"
                " submitted again)", job_id=rid))
        if pump is not None:
            pump.kick()

    def _arm(self, at: float, now: float) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - now), self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = time.monotonic()
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            deadline, rid = heapq.heappop(dl)
            p = self._pending.get(rid)
            if p is None or p.deadline != deadline:
                continue
            del self._pending[rid]
            if p.fut.done():
                continue
            ep = self._endpoint(p.cls)
            if p.cls in self._heard:
                p.fut.set_exception(JobTimeout(
                    f"no answer from the broker at {ep} within {deadline - p.sent:g} s",
                    job_id=rid))
            else:
                p.fut.set_exception(BrokerUnreachable(
                    f"no answer from a broker at {ep} within {deadline - p.sent:g} s"
                    " (is it running, and is its public key the one configured here?)"))
        if len(dl) > 2 * len(self._pending) + 1024:
            self._deadlines = [(p.deadline, r) for r, p in self._pending.items()]
            heapq.heapify(self._deadlines)
        if self._deadlines:
            self._arm(self._deadlines[0][0], now)

    def _enqueue(self, cls: int, idx: int, frames: list[Frame], now: float) -> bool:
        """Send ``frames`` on class ``cls`` (socket ``idx``): at once, or, while
        the broker accepts BATCH, at the end of this pump run with the other
        messages of the run (:meth:`_after_run`).  False when the send queue
        is full."""
        pump = self._pump
        if pump is None:
            return False
        q = self._outbox.get(cls)
        if (not self.core.broker_batches or not self._can_batch
                or (not q and (len(frames[2]) > MAX_BATCHED_MESSAGE or not self._sent_alone))):
            # A big one goes at once when nothing waits before it: it would
            # go alone anyway.  So does the first request since the last
            # run: one in flight does not wait a loop turn for company; the
            # ones that follow it before the run are batched.
            self._sent_alone = True
            return pump.send(idx, frames, now)
        if q is None:
            q = self._outbox[cls] = []
        if len(q) + pump.pending(idx) >= MAX_PENDING:
            return False
        q.append(frames)
        pump.kick()  # the after-run sends the outbox
        return True

    def _on_message(self, idx: int, frames: list[Frame], now: float,
                    uid: str | None = None) -> None:
        cls = self._monitor_of.get(idx)
        if cls is not None:
            self._on_monitor(cls, frames)
            return
        if is_batch(frames):
            try:
                msgs = decode_batch(frames)
            except ProtocolError:
                self.core.malformed += 1
                return
            for m in msgs:
                self._on_reply(m)
        else:
            self._on_reply(frames)

    def _on_reply(self, frames: list[Frame]) -> None:
        reply = self.core.on_message(frames)
        if reply is None:
            return
        if reply.kind == "pong":
            self._on_incarnation(reply.value)
            return
        p = self._pending.get(reply.id)
        if p is None:
            return
        if reply.kind == "error" and p.resubmitted:
            if reply.value.details.get("duplicate"):
                return  # our resubmission met the job itself: its answer comes
            if (reply.value.code in ("tool_not_found", "no_route")
                    and p.resubmitted < MAX_RESUBMITS + MAX_STARTING_RESENDS
                    and p.frames is not None
                    and self._loop is not None):
                # The restarted broker's workers have not registered again
                # yet: submit once more a watch interval later.
                p.resubmitted += 1
                self._loop.call_later(WATCH_INTERVAL, self._resend, reply.id)
                return
        self._heard.add(p.cls)
        kind = reply.kind
        if kind == "progress":
            if p.on_progress is not None:
                try:
                    p.on_progress(reply.value)
                except Exception:  # a user callback must not break the client
                    pass
            return
        del self._pending[reply.id]
        if p.fut.done():
            return
        if kind == "error":
            p.fut.set_exception(reply.value)
        else:
            p.fut.set_result(reply.value)

    def _on_monitor(self, cls: int, frames: list[Frame]) -> None:
        try:
            ev = parse_monitor_message(cast(list[bytes], frames))  # (small frames: bytes)
        except Exception:
            return
        event = ev["event"]
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._auth_failed.pop(cls, None)
            self._heard.add(cls)
            return
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            pub = self._keys.public.decode("ascii")
            why = (f"the broker at {self._endpoint(cls)} refused this client's key {pub}"
                   " (it was not in the broker's trust store when this client connected;"
                   " its log says so as zap_refused; to trust it there:"
                   f" operone keys accept -- NAME '{pub}', then reconnect)")
        else:
            why = (f"CurveZMQ handshake with {self._endpoint(cls)} failed (wrong server key,"
                   " or the broker does not use CurveZMQ)")
        self._auth_failed[cls] = why
        for rid, p in list(self._pending.items()):
            if p.cls == cls and not p.fut.done():
                del self._pending[rid]
                p.fut.set_exception(AuthenticationError(why))

    def _after_run(self, now: float) -> None:
        # This run's requests per class, batched (the broker accepts BATCH).
        pump = self._pump
        self._sent_alone = False
        if not self._outbox or pump is None:
            return
        outbox, self._outbox = self._outbox, {}
        for cls, q in outbox.items():
            idx = self._sock_index(cls)
            for frames in pack_messages(q, cls) if len(q) > 1 else q:
                pump.send(idx, frames, now)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)


class Client:
    """Blocking client: the same API as :class:`AsyncClient`, from plain
    threads.  Runs an AsyncClient on a private event loop thread."""

    def __init__(self, host: str = "127.0.0.1", base_port: int = 7700, **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="operone-client",
                                        daemon=True)
        self._loop_thread.start()
        self._aclient = AsyncClient(host, base_port, **kw)
        self._call(self._aclient.connect())
        self._closed = False

    @classmethod
    def from_home(cls, path: str | os.PathLike[str] | None = None, *,
                  broker: str | None = None, server_key: str | None = None,
                  **kw: Any) -> Client:
        """A blocking client of the node whose home is ``path`` (default:
        $OPERONE_HOME, else ~/.config/operone), with that node's keys and its
        broker's address from its config."""
        return cls(**{**_home_settings(path, broker, server_key), **kw})

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def aclient(self) -> AsyncClient:
        """The AsyncClient behind this client (use it only from its loop)."""
        return self._aclient

    def submit(self, tool: str, args: Mapping[str, Any] | None = None,
               **kw: Any) -> ClientJobFuture:
        """Submit a job; a concurrent future of its :class:`JobResult`, its
        ``job_id`` known at once.  Cancelling the future cancels the job (its
        ``result()`` raises JobCancelled)."""
        async def go() -> JobFuture:
            return self._aclient.submit(tool, args, **kw)

        try:
            afut: JobFuture = self._call(go())
        except Exception as exc:  # bad arguments: the future raises it, as before
            failed = ClientJobFuture("", lambda: None)
            failed.set_exception(exc)
            return failed
        loop = self._loop

        def cancel_job() -> None:
            loop.call_soon_threadsafe(afut.cancel)

        cf = ClientJobFuture(afut.job_id, cancel_job)

        def copy(f: asyncio.Future[JobResult]) -> None:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if f.cancelled():
                    cf.set_exception(JobCancelled(f"job '{afut.job_id}' was cancelled",
                                                  job_id=afut.job_id))
                elif f.exception() is not None:
                    cf.set_exception(f.exception())
                else:
                    cf.set_result(f.result())

        loop.call_soon_threadsafe(afut.add_done_callback, copy)
        return cf

    def run(self, tool: str, args: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """Run a job and return its value (raises the job's typed error)."""
        return self.submit(tool, args, **kw).result().value

    def map(self, tool: str, args_list: Iterable[Mapping[str, Any]], *,
            concurrency: int = 100, **kw: Any) -> list[Any]:
        """Run ``tool`` once per argument map; values in input order."""
        values: list[Any] = self._call(
            self._aclient.map(tool, list(args_list), concurrency=concurrency, **kw))
        return values

    def as_completed(self, tool: str, args_list: Iterable[Mapping[str, Any]], *,
                     concurrency: int = 100,
                     **kw: Any) -> Iterable[tuple[int, JobResult | BaseException]]:
        """Yield ``(index, result or error)`` as jobs finish."""
        agen = self._aclient.as_completed(tool, list(args_list), concurrency=concurrency, **kw)
        while True:
            try:
                item = self._call(agen.__anext__())
            except StopAsyncIteration:
                return
            yield item

    def query(self, what: str, args: Mapping[str, Any] | None = None,
              timeout: float = 10.0) -> Any:
        """Ask the broker (QUERY)."""
        return self._call(self._aclient.query(what, args, timeout))

    def stats(self) -> dict[str, Any]:
        """The broker's counters."""
        return self._call(self._aclient.stats())  # type: ignore[no-any-return]

    def workers(self) -> list[dict[str, Any]]:
        """The broker's registered workers."""
        return self._call(self._aclient.workers())  # type: ignore[no-any-return]

    def ping(self, timeout: float = 5.0) -> str:
        """Round-trip to the broker; returns its node id."""
        return self._call(self._aclient.ping(timeout))  # type: ignore[no-any-return]

    def peers(self) -> list[dict[str, Any]]:
        """The broker's peer links."""
        return self._call(self._aclient.peers())  # type: ignore[no-any-return]

    def topology(self) -> dict[str, Any]:
        """The mesh's link-state graph as the broker sees it."""
        return self._call(self._aclient.topology())  # type: ignore[no-any-return]

    def route(self, dest: str) -> dict[str, Any]:
        """The broker's route to node ``dest``."""
        return self._call(self._aclient.route(dest))  # type: ignore[no-any-return]

    def network_stats(self) -> dict[str, Any]:
        """Mesh statistics."""
        return self._call(self._aclient.network_stats())  # type: ignore[no-any-return]

    def broadcast(self, data: Any) -> int:
        """Send ``data`` to every broker of the mesh."""
        return self._call(self._aclient.broadcast(data))  # type: ignore[no-any-return]

    def qos(self, peer: str, allocate: float | None = None) -> dict[str, Any]:
        """QoS metrics of the broker's link to ``peer``."""
        return self._call(self._aclient.qos(peer, allocate))  # type: ignore[no-any-return]

    def copy_file(self, local: str, node: str, remote: str, **kw: Any) -> TransferResult:
        """Copy a local file to ``node``:``remote`` (chunked, throttled, resumable)."""
        r: TransferResult = self._call(self._aclient.copy_file(local, node, remote, **kw))
        return r

    def cancel(self, job_id: str, reason: str = "") -> bool:
        """Cancel job ``job_id`` (submitted to this broker by any client)."""
        return self._call(self._aclient.cancel_remote(job_id, reason))  # type: ignore[no-any-return]

    def placement(self, tool: str, capabilities: Iterable[str] = (),
                  prefer_local: bool = False) -> dict[str, Any]:
        """Where the broker would run ``tool`` now, and why."""
        return self._call(  # type: ignore[no-any-return]
            self._aclient.placement(tool, list(capabilities), prefer_local))

    def close(self) -> None:
        """Close the client and its loop thread.  Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._aclient.close(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
