"""BrokerCore: the broker's logic with no I/O.

Frames and ``now`` go in; frames to send come out in :attr:`BrokerCore.out`
as ``(socket, frames)`` pairs, where ``socket`` is one of the indices below.
The asyncio shell (:mod:`operone_zmq.aio.broker`) owns the sockets, feeds
every received message in, flushes ``out`` and calls :meth:`tick` at
:meth:`next_deadline`.

Sockets (indices into the shell's socket list)::

    0..3  CRITICAL, HIGH, NORMAL, LOW   frontend ROUTERs (clients, later peers)
    4     WORKERS                       the local ROUTER that workers dial

Worker session lifecycle (one table, all transitions here)::

    (unknown) --READY--> READY --(no message for liveness x interval)--> gone
    READY --READY--> READY (re-registration: jobs it was running are lost)
    READY --DISCONNECT--> gone
    any message from an unknown worker other than READY --> we answer
        DISCONNECT("unknown worker"), and the worker registers again.

Job lifecycle on this broker::

    (new) --accepted, a worker has a free slot--> RUNNING
    (new) --accepted, all slots busy--> QUEUED --slot frees--> RUNNING
    (new) --bad request / no tool / queue full--> ERROR to the submitter
    QUEUED|RUNNING --RESULT/ERROR from its worker--> done (reply forwarded)
    QUEUED|RUNNING --deadline--> ERROR timeout (the worker gets CANCEL)
    QUEUED|RUNNING --CANCEL from the submitter--> ERROR cancelled
    RUNNING --its worker is lost--> ERROR worker_lost

Every job accepted ends in exactly one reply to its submitter.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import (
    BadRequest,
    JobCancelled,
    JobError,
    JobTimeout,
    NoRoute,
    Overloaded,
    ProtocolError,
    ToolNotFound,
    WorkerLost,
)
from ..protocol.bodies import (
    Cancel,
    Disconnect,
    ErrorBody,
    Heartbeat,
    JobRequest,
    Query,
    Ready,
    pack_value,
)
from ..protocol.codec import TAG, Header, MsgType, decode, decode_header, encode_header
from ..protocol.limits import DEFAULT_TTL, MAX_HEADER_SIZE

__all__ = ["CLASS_NAMES", "WORKERS", "BrokerCore", "BrokerLimits", "WorkerSession"]

#: Frontend socket of each priority class, and the workers' socket.
CLASS_NAMES = ("critical", "high", "normal", "low")
WORKERS = 4

_JOB = int(MsgType.JOB)
_RESULT = int(MsgType.RESULT)
_ERROR = int(MsgType.ERROR)
_PROGRESS = int(MsgType.PROGRESS)
_HEARTBEAT = int(MsgType.HEARTBEAT)
_READY = int(MsgType.READY)
_DISCONNECT = int(MsgType.DISCONNECT)
_QUERY = int(MsgType.QUERY)
_CANCEL = int(MsgType.CANCEL)
_PING = int(MsgType.PING)

_QUEUED = 0
_RUNNING = 1


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Bounds and timings of one broker."""

    #: Jobs waiting for a free worker slot; past it, submitters get Overloaded.
    #: 10,000 is ~100x what a busy node runs at once and a few MB of memory.
    max_queued_jobs: int = 10_000
    #: Jobs accepted and not yet finished (queued + running).
    max_jobs: int = 100_000
    #: Timeout for a job that names none.
    default_timeout: float = 300.0
    #: Seconds between heartbeats to each worker.
    heartbeat_interval: float = 1.0
    #: Heartbeat intervals of silence after which a worker is declared dead.
    liveness: int = 3


@dataclass(slots=True)
class WorkerSession:
    """A registered worker and the jobs it is running."""

    rid: bytes
    name: str
    tools: frozenset[str]
    caps: frozenset[str]
    slots: int
    pid: int
    expires: float
    running: set[str] = field(default_factory=set)
    done: int = 0

    @property
    def free(self) -> int:
        return self.slots - len(self.running)


@dataclass(slots=True)
class _Job:
    id: str
    client: bytes
    cls: int
    tool: str
    caps: frozenset[str]
    frames: list[bytes]  # tag, header, body: forwarded to the worker untouched
    deadline: float
    submitted: float
    src: str
    state: int = _QUEUED
    worker: bytes | None = None


class BrokerCore:
    """Everything a broker decides, with no sockets and no clock of its own."""

    def __init__(
        self,
        node_id: str,
        *,
        limits: BrokerLimits | None = None,
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.limits = limits or BrokerLimits()
        self._wall = wall
        #: Frames to send: (socket index, frames including the routing id).
        self.out: list[tuple[int, list[bytes]]] = []
        self.workers: dict[bytes, WorkerSession] = {}
        self._by_tool: dict[str, list[WorkerSession]] = {}
        self._jobs: dict[str, _Job] = {}
        self._queues: dict[tuple[str, frozenset[str]], deque[str]] = {}
        self._queued = 0
        self._deadlines: list[tuple[float, str]] = []
        self._next_heartbeat = now + self.limits.heartbeat_interval
        self._seq = 0
        self.started = now
        self.counters: dict[str, int] = {
            "jobs_received": 0,
            "jobs_completed": 0,
            "jobs_failed": 0,
            "jobs_timed_out": 0,
            "jobs_cancelled": 0,
            "workers_lost": 0,
            "malformed": 0,
            "unroutable": 0,
            "late_replies": 0,
            "queries": 0,
        }
        self.errors: dict[str, int] = {}

    # ------------------------------------------------------------- helpers
    def _header(self, t: int, mid: str, dst: str, cls: int, corr: str | None = None) -> bytes:
        return encode_header(
            Header(t, mid, self.node_id, dst, DEFAULT_TTL, int(self._wall() * 1000), cls, corr)
        )

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self.node_id[:40]}.{self._seq}"

    def _send_error(
        self, sock: int, rid: bytes, mid: str, dst: str, cls: int, err: JobError,
        corr: str | None = None,
    ) -> None:
        self.errors[err.code] = self.errors.get(err.code, 0) + 1
        body = ErrorBody(err.code, err.message, err.remote_type, err.node or self.node_id,
                         err.details).pack()
        self.out.append((sock, [rid, TAG, self._header(_ERROR, mid, dst, cls, corr), body]))

    # ------------------------------------------------------------ frontend
    def on_frontend(self, cls: int, frames: list[bytes], now: float) -> None:
        """Handle one message from a client on the frontend of class ``cls``."""
        rid = frames[0]
        try:
            msg = decode(frames, 1)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            # The sender passed ZAP, so it hears what was wrong; nothing else changes.
            self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
            body = ErrorBody(exc.code, str(exc), None, self.node_id, {}).pack()
            mid = _best_effort_id(frames)
            self.out.append((cls, [rid, TAG, self._header(_ERROR, mid, "", cls), body]))
            return
        h = msg.header
        t = h.type
        if t == _JOB:
            self._on_job(cls, rid, h, frames, msg.body, now)
        elif t == _QUERY:
            self._on_query(cls, rid, h, msg.body, now)
        elif t == _CANCEL:
            self._on_cancel(cls, rid, h, msg.body, now)
        elif t == _PING:
            self.out.append(
                (cls, [rid, TAG, self._header(int(MsgType.PONG), h.id, h.src, cls, h.id), b""])
            )
        else:
            self._send_error(
                cls, rid, h.id, h.src, cls,
                BadRequest(f"message type {MsgType(t).name} is not accepted from a client"),
            )

    def _on_job(
        self, cls: int, rid: bytes, h: Header, frames: list[bytes], body: bytes, now: float
    ) -> None:
        self.counters["jobs_received"] += 1
        jid = h.id
        if jid in self._jobs:
            self._send_error(cls, rid, jid, h.src, cls,
                             BadRequest(f"job id '{jid}' is already in use", job_id=jid))
            return
        try:
            req = JobRequest.unpack(body)
        except ProtocolError as exc:
            self._send_error(cls, rid, jid, h.src, cls, BadRequest(str(exc), job_id=jid))
            return
        if req.on is not None and req.on != self.node_id:
            self._send_error(cls, rid, jid, h.src, cls, NoRoute(
                f"no route to node '{req.on}' (this broker is '{self.node_id}' and has no"
                " peer links)", job_id=jid))
            return
        caps = frozenset(req.caps)
        candidates = self._by_tool.get(req.tool)
        if not candidates:
            self._send_error(cls, rid, jid, h.src, cls, ToolNotFound(
                f"no worker on node '{self.node_id}' offers tool '{req.tool}'", job_id=jid))
            return
        if caps and not any(caps <= w.caps for w in candidates):
            self._send_error(cls, rid, jid, h.src, cls, ToolNotFound(
                f"no worker on node '{self.node_id}' offers tool '{req.tool}' with capabilities"
                f" {sorted(caps)}", job_id=jid))
            return
        if len(self._jobs) >= self.limits.max_jobs:
            self._send_error(cls, rid, jid, h.src, cls, Overloaded(
                f"node '{self.node_id}' has {len(self._jobs)} jobs in progress (limit"
                f" {self.limits.max_jobs})", job_id=jid))
            return
        timeout = req.timeout if req.timeout is not None else self.limits.default_timeout
        job = _Job(jid, rid, cls, req.tool, caps, frames[1:], now + timeout, now, h.src)
        worker = self._pick(candidates, caps)
        if worker is None:
            if self._queued >= self.limits.max_queued_jobs:
                self._send_error(cls, rid, jid, h.src, cls, Overloaded(
                    f"node '{self.node_id}' has {self._queued} jobs queued (limit"
                    f" {self.limits.max_queued_jobs}); retry later", job_id=jid))
                return
            key = (req.tool, caps)
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = deque()
            q.append(jid)
            self._queued += 1
        else:
            self._dispatch(job, worker)
        self._jobs[jid] = job
        heapq.heappush(self._deadlines, (job.deadline, jid))

    @staticmethod
    def _pick(candidates: list[WorkerSession], caps: frozenset[str]) -> WorkerSession | None:
        best: WorkerSession | None = None
        best_free = 0
        for w in candidates:
            free = w.slots - len(w.running)
            if free > best_free and (not caps or caps <= w.caps):
                best, best_free = w, free
        return best

    def _dispatch(self, job: _Job, worker: WorkerSession) -> None:
        job.state = _RUNNING
        job.worker = worker.rid
        worker.running.add(job.id)
        self.out.append((WORKERS, [worker.rid, *job.frames]))

    def _finish(self, job: _Job) -> None:
        del self._jobs[job.id]

    def _fail(self, job: _Job, err: JobError) -> None:
        """End ``job`` with ``err`` sent to its submitter."""
        self._jobs.pop(job.id, None)
        self.counters["jobs_failed"] += 1
        self._send_error(job.cls, job.client, job.id, job.src, job.cls, err)

    def _on_query(self, cls: int, rid: bytes, h: Header, body: bytes, now: float) -> None:
        self.counters["queries"] += 1
        try:
            q = Query.unpack(body)
        except ProtocolError as exc:
            self._send_error(cls, rid, h.id, h.src, cls, BadRequest(str(exc)), corr=h.id)
            return
        answer = self.answer_query(q, now)
        if answer is None:
            self._send_error(cls, rid, h.id, h.src, cls,
                             BadRequest(f"unknown query '{q.what}'"), corr=h.id)
            return
        self.out.append(
            (cls, [rid, TAG, self._header(int(MsgType.REPLY), h.id, h.src, cls, h.id),
                   pack_value(answer)])
        )

    def answer_query(self, q: Query, now: float) -> Any:
        """The answer to a QUERY, or None when the query is unknown."""
        if q.what == "stats":
            return self.stats(now)
        if q.what == "workers":
            return [
                {"name": w.name, "pid": w.pid, "tools": sorted(w.tools), "caps": sorted(w.caps),
                 "slots": w.slots, "running": len(w.running), "done": w.done}
                for w in self.workers.values()
            ]
        if q.what == "tools":
            return {t: len(ws) for t, ws in sorted(self._by_tool.items())}
        if q.what == "ping":
            return {"node": self.node_id}
        return None

    def _on_cancel(self, cls: int, rid: bytes, h: Header, body: bytes, now: float) -> None:
        try:
            reason = Cancel.unpack(body).reason
        except ProtocolError:
            reason = ""
        job = self._jobs.get(h.id)
        if job is None or job.client != rid:
            return  # finished already (its reply is on the way) or not ours: nothing to do
        self.counters["jobs_cancelled"] += 1
        self._abort(job, JobCancelled(f"job '{job.id}' was cancelled"
                                      + (f": {reason}" if reason else ""), job_id=job.id))

    def _abort(self, job: _Job, err: JobError) -> None:
        """Stop ``job`` wherever it is and answer its submitter with ``err``."""
        if job.state == _QUEUED:
            q = self._queues.get((job.tool, job.caps))
            if q is not None:
                try:
                    q.remove(job.id)
                    self._queued -= 1
                except ValueError:
                    pass
        elif job.worker is not None and job.worker in self.workers:
            # The slot stays taken until the worker answers the CANCEL.
            self.out.append((WORKERS, [job.worker, TAG,
                                       self._header(_CANCEL, job.id, "", job.cls),
                                       Cancel(err.code).pack()]))
        self._fail(job, err)

    # ------------------------------------------------------------- workers
    def on_worker(self, frames: list[bytes], now: float) -> None:
        """Handle one message from a local worker."""
        rid = frames[0]
        try:
            msg = decode(frames, 1)
        except ProtocolError:
            self.counters["malformed"] += 1
            return  # a broken worker: it is heard from no further than this
        h = msg.header
        t = h.type
        w = self.workers.get(rid)
        if t in (_RESULT, _ERROR):
            if w is not None:
                w.expires = now + self.limits.liveness * self.limits.heartbeat_interval
                w.running.discard(h.id)
                w.done += 1
            job = self._jobs.get(h.id)
            if job is not None and job.worker == rid:
                del self._jobs[h.id]
                self.counters["jobs_completed" if t == _RESULT else "jobs_failed"] += 1
                if t == _ERROR:
                    self._count_error(msg.body)
                self.out.append((job.cls, [job.client, *frames[1:]]))
            else:
                self.counters["late_replies"] += 1
            if w is not None and self._queued:
                self._fill(w)
            if w is None:
                self._unknown_worker(rid, h)
            return
        if t == _PROGRESS:
            job = self._jobs.get(h.id)
            if job is not None and job.worker == rid:
                self.out.append((job.cls, [job.client, *frames[1:]]))
            if w is not None:
                w.expires = now + self.limits.liveness * self.limits.heartbeat_interval
            return
        if t == _HEARTBEAT:
            if w is None:
                self._unknown_worker(rid, h)
            else:
                w.expires = now + self.limits.liveness * self.limits.heartbeat_interval
            return
        if t == _READY:
            try:
                ready = Ready.unpack(msg.body)
            except ProtocolError as exc:
                self.counters["malformed"] += 1
                self.out.append((WORKERS, [rid, TAG, self._header(_DISCONNECT, h.id, "", 0),
                                           Disconnect(f"bad READY: {exc}").pack()]))
                return
            self._register(rid, ready, now)
            return
        if t == _DISCONNECT:
            if w is not None:
                self._remove_worker(w, "the worker disconnected")
            return
        self.counters["malformed"] += 1

    def _count_error(self, body: bytes) -> None:
        try:
            code = ErrorBody.unpack(body).code
        except ProtocolError:
            code = "protocol"
        self.errors[code] = self.errors.get(code, 0) + 1

    def _unknown_worker(self, rid: bytes, h: Header) -> None:
        self.out.append((WORKERS, [rid, TAG, self._header(_DISCONNECT, h.id, "", 0),
                                   Disconnect("unknown worker; send READY").pack()]))

    def _register(self, rid: bytes, ready: Ready, now: float) -> None:
        old = self.workers.get(rid)
        if old is not None:
            self._remove_worker(old, "the worker registered again (it restarted)")
        w = WorkerSession(
            rid=rid,
            name=ready.worker,
            tools=frozenset(t.name for t in ready.tools),
            caps=frozenset(ready.caps),
            slots=ready.slots,
            pid=ready.pid,
            expires=now + self.limits.liveness * self.limits.heartbeat_interval,
        )
        self.workers[rid] = w
        for tool in w.tools:
            self._by_tool.setdefault(tool, []).append(w)
        # Tell the worker who we are (src) and that it is registered.
        self.out.append((WORKERS, [rid, TAG, self._header(_HEARTBEAT, self._next_id(), "", 0),
                                   Heartbeat(0).pack()]))
        if self._queued:
            self._fill(w)

    def _remove_worker(self, w: WorkerSession, reason: str) -> None:
        self.workers.pop(w.rid, None)
        for tool in w.tools:
            lst = self._by_tool.get(tool)
            if lst is not None:
                try:
                    lst.remove(w)
                except ValueError:
                    pass
                if not lst:
                    del self._by_tool[tool]
        for jid in sorted(w.running):
            job = self._jobs.get(jid)
            if job is not None and job.worker == w.rid:
                self._fail(job, WorkerLost(
                    f"worker '{w.name}' (pid {w.pid}) on node '{self.node_id}' was lost while"
                    f" running job '{jid}': {reason}", job_id=jid, node=self.node_id))
        w.running.clear()
        # Queued jobs whose tool nobody offers any more fail now, not at their deadline.
        for key in [k for k in self._queues if k[0] not in self._by_tool]:
            for jid in self._queues.pop(key):
                self._queued -= 1
                job = self._jobs.get(jid)
                if job is not None:
                    self._fail(job, ToolNotFound(
                        f"no worker on node '{self.node_id}' offers tool '{key[0]}' any more",
                        job_id=jid))

    def _fill(self, w: WorkerSession) -> None:
        """Give ``w`` queued jobs it can run while it has free slots."""
        while w.free > 0 and self._queued:
            best_key: tuple[str, frozenset[str]] | None = None
            best_t = 0.0
            for key, q in self._queues.items():
                if q and key[0] in w.tools and key[1] <= w.caps:
                    t = self._jobs[q[0]].submitted
                    if best_key is None or t < best_t:
                        best_key, best_t = key, t
            if best_key is None:
                return
            q = self._queues[best_key]
            jid = q.popleft()
            self._queued -= 1
            if not q:
                del self._queues[best_key]
            self._dispatch(self._jobs[jid], w)

    def on_unroutable(self, sock: int, frames: list[bytes], now: float) -> None:
        """The shell could not deliver ``frames`` (the peer is gone)."""
        self.counters["unroutable"] += 1
        if sock != WORKERS:
            return  # a client went away; its jobs end at their deadlines
        w = self.workers.get(frames[0])
        if w is None:
            return
        try:
            h = decode_header(frames[2])
        except ProtocolError:
            h = None
        if h is not None and h.type == _JOB:
            job = self._jobs.get(h.id)
            if job is not None and job.worker == w.rid:
                # Never delivered: put it back at the head of its queue.
                w.running.discard(job.id)
                job.state, job.worker = _QUEUED, None
                self._queues.setdefault((job.tool, job.caps), deque()).appendleft(job.id)
                self._queued += 1
        self._remove_worker(w, "its connection is gone")
        self.counters["workers_lost"] += 1
        for other in list(self.workers.values()):
            if self._queued:
                self._fill(other)

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        """Run timers: heartbeats, worker liveness and job deadlines."""
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.limits.heartbeat_interval
            for w in list(self.workers.values()):
                if w.expires <= now:
                    self.counters["workers_lost"] += 1
                    silence = self.limits.liveness * self.limits.heartbeat_interval
                    self._remove_worker(w, f"no heartbeat within {silence:g} s")
                    continue
                self.out.append((WORKERS, [w.rid, TAG,
                                           self._header(_HEARTBEAT, self._next_id(), "", 0),
                                           b""]))
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            deadline, jid = heapq.heappop(dl)
            job = self._jobs.get(jid)
            if job is None or job.deadline != deadline:
                continue
            self.counters["jobs_timed_out"] += 1
            self._abort(job, JobTimeout(
                f"job '{jid}' ({job.tool}) did not finish within"
                f" {deadline - job.submitted:g} s on node '{self.node_id}'", job_id=jid,
                node=self.node_id))
        # Drop stale heap entries so the heap stays as small as the job table.
        if len(dl) > 2 * len(self._jobs) + 1024:
            self._deadlines = [(j.deadline, j.id) for j in self._jobs.values()]
            heapq.heapify(self._deadlines)

    def next_deadline(self) -> float:
        """When :meth:`tick` must next run."""
        t = self._next_heartbeat
        if self._deadlines and self._deadlines[0][0] < t:
            t = self._deadlines[0][0]
        return t

    # ---------------------------------------------------------------- state
    def stats(self, now: float) -> dict[str, Any]:
        """Counters and gauges, as answered to QUERY "stats"."""
        running = sum(len(w.running) for w in self.workers.values())
        return {
            "node": self.node_id,
            "uptime": round(now - self.started, 3),
            "workers": len(self.workers),
            "slots": sum(w.slots for w in self.workers.values()),
            "running": running,
            "queued": self._queued,
            "jobs_in_progress": len(self._jobs),
            "tools": sorted(self._by_tool),
            **self.counters,
            "errors": dict(self.errors),
        }

    def shutdown(self, reason: str = "the broker is shutting down") -> None:
        """Answer every job in progress with an error and tell workers to go."""
        for job in list(self._jobs.values()):
            self._abort(job, NoRoute(f"job '{job.id}' was stopped: {reason}", job_id=job.id,
                                     node=self.node_id))
        for w in self.workers.values():
            self.out.append((WORKERS, [w.rid, TAG,
                                       self._header(_DISCONNECT, self._next_id(), "", 0),
                                       Disconnect(reason).pack()]))


def _best_effort_id(frames: list[bytes]) -> str:
    """The id of a message we could not decode, when it can be found at all."""
    if len(frames) >= 3 and len(frames[2]) <= MAX_HEADER_SIZE:
        try:
            h = msgpack.unpackb(frames[2], raw=False)
        except Exception:
            return "-"
        if isinstance(h, list | tuple) and len(h) >= 2 and isinstance(h[1], str):
            return h[1][:64] or "-"
    return "-"
