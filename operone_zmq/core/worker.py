"""WorkerCore: a worker's side of the worker dialogue, with no I/O.

The shell feeds in the broker's messages and the outcome of each job; the
core says which jobs to start or stop and puts frames for the broker in
:attr:`WorkerCore.out` (a DEALER sends them; there is no routing id).

Broker session lifecycle::

    start() --> READY sent, CONNECTING
    CONNECTING --any message from the broker--> CONNECTED (node id learned)
    CONNECTED|CONNECTING --silence for liveness x interval--> LOST:
        tick() returns True; the shell reconnects its socket and calls start()
    any --DISCONNECT from the broker--> READY sent again (the broker forgot us
        or restarted), listing the jobs still running (they go on and report
        when done), then the RESULTs sent in the last 2 liveness periods
        again (the old broker may have died with them)

Job lifecycle in the worker::

    JOB --> RUNNING --done(value)--> RESULT    | --fail(err)--> ERROR
    JOB with the id of a running job --> joins it (nothing new runs)
    RUNNING --deadline passes--> ERROR timeout, the job is told to stop;
        whatever it returns later is dropped
    RUNNING --CANCEL--> ERROR cancelled, same
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..errors import BadRequest, JobCancelled, JobError, JobTimeout, ProtocolError, ToolFailed
from ..protocol.bodies import (
    Disconnect,
    ErrorBody,
    Heartbeat,
    JobRequest,
    Progress,
    Ready,
    ResultBody,
    ToolInfo,
)
from ..protocol.codec import TAG, Header, MsgType, decode, encode_header
from ..protocol.frame import Frame

__all__ = ["MAX_RECENT_RESULTS", "JobStart", "WorkerCore"]

#: RESULTs remembered to send again when we register again (our broker may
#: have died with them unread); a broker restart takes a few heartbeats, and
#: a worker finishes at most a few hundred jobs meanwhile.
MAX_RECENT_RESULTS: Final = 1024
#: Bytes of those RESULTs' bodies kept, as MAX_RECENT_RESULTS counts them:
#: 1,024 results of 1 MiB would hold a GiB.  16 MiB keeps every result of
#: a few seconds of 64 KiB jobs at full speed (about 100 MB/s).
MAX_RECENT_BYTES: Final = 16 * 1024 * 1024

_JOB: Final = int(MsgType.JOB)
_CANCEL: Final = int(MsgType.CANCEL)
_HEARTBEAT: Final = int(MsgType.HEARTBEAT)
_DISCONNECT: Final = int(MsgType.DISCONNECT)
_RESULT: Final = int(MsgType.RESULT)
_PROGRESS: Final = int(MsgType.PROGRESS)
_ERROR: Final = int(MsgType.ERROR)


# (init=False and an __init__ of their own: one of each is made per job, and
# compiled by mypyc a dataclass's generated __init__ stays interpreted, 6x
# the cost; in pure Python they are alike.)
@dataclass(frozen=True, slots=True, init=False)
class JobStart:
    """A job the shell must start."""

    id: str
    tool: str
    args: dict[str, Any]
    deadline: float
    cls: int
    stream: bool

    def __init__(self, id: str, tool: str, args: dict[str, Any], deadline: float, cls: int,
                 stream: bool = False) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "tool", tool)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "deadline", deadline)
        object.__setattr__(self, "cls", cls)
        object.__setattr__(self, "stream", stream)


@dataclass(slots=True, init=False)
class _Running:
    id: str
    tool: str
    cls: int
    started: float
    deadline: float

    def __init__(self, id: str, tool: str, cls: int, started: float,
                 deadline: float) -> None:
        self.id = id
        self.tool = tool
        self.cls = cls
        self.started = started
        self.deadline = deadline


class WorkerCore:
    """Decides what a worker sends and runs; the shell does the I/O."""

    def __init__(
        self,
        name: str,
        tools: list[ToolInfo],
        *,
        caps: tuple[str, ...] = (),
        slots: int = 64,
        pid: int = 0,
        heartbeat_interval: float = 1.0,
        liveness: int = 3,
        default_timeout: float = 300.0,
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
        batch: bool = False,
    ) -> None:
        """``batch``: say in READY that this worker accepts BATCH (its shell
        unpacks them; revision 7)."""
        self.name = name
        self.node = ""
        self._registration = Ready(name, tuple(tools), caps, slots, pid, batch=batch)
        self.tool_names = frozenset(t.name for t in tools)
        self.interval = heartbeat_interval
        self.liveness = liveness
        self.default_timeout = default_timeout
        self._wall = wall
        self.out: list[list[Frame]] = []
        self.running: dict[str, _Running] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._broker_expires = now + liveness * heartbeat_interval
        self._next_heartbeat = now + heartbeat_interval
        self._seq = 0
        self.connected = False
        self._ready_at: float | None = None
        self._registered_once = False
        #: job id -> (sent at, frames) of RESULTs of the last liveness period x 2.
        self._recent: dict[str, tuple[float, list[Frame]]] = {}
        self._recent_bytes = 0
        self.counters = {"jobs": 0, "results": 0, "errors": 0, "timeouts": 0, "cancelled": 0,
                         "malformed": 0, "reconnects": 0, "joined": 0}

    def _header(self, t: int, mid: str, cls: int = 0) -> bytes:
        # (A plain tuple: the same array, without Header's interpreted __new__.)
        return encode_header((t, mid, self.name, self.node, 1, int(self._wall() * 1000),
                              cls, None))

    def _mid(self) -> str:
        self._seq += 1
        return f"{self.name[:40]}.{self._seq}"

    def start(self, now: float) -> None:
        """(Re)register with the broker."""
        # The jobs still running are listed: a broker that restarted learns
        # them, and a retry of one joins it instead of running it twice.
        ready = self._registration
        if self.running:
            ready = dataclasses.replace(ready, running=tuple(self.running))
        self.out.append([TAG, self._header(int(MsgType.READY), self._mid()), ready.pack()])
        if self._registered_once:
            # Answers our previous broker may have died with: it keeps them
            # for the retry that will ask (core/local.py, orphans).
            keep = now - 2 * self.liveness * self.interval
            for jid, (at, frames) in list(self._recent.items()):
                if at < keep:
                    del self._recent[jid]
                    self._recent_bytes -= len(frames[2])
                else:
                    self.out.append(frames)
        self._registered_once = True
        self._broker_expires = now + self.liveness * self.interval
        self._next_heartbeat = now + self.interval

    # ------------------------------------------------------------ incoming
    def on_broker(self, frames: list[Frame], now: float) -> JobStart | str | None:
        """Handle a broker message: a :class:`JobStart` to run, a job id to
        stop (cancelled), or None."""
        try:
            msg = decode(frames)
        except ProtocolError:
            self.counters["malformed"] += 1
            return None
        h = msg.header
        self._broker_expires = now + self.liveness * self.interval
        t = h.type
        if t in (_HEARTBEAT, _DISCONNECT):
            # Only the broker's own messages name it in src (a JOB's src is
            # its submitter).
            self.connected = True
            if h.src:
                self.node = h.src
        if t == _JOB:
            return self._on_job(h, msg.body, now)
        if t == _CANCEL:
            job = self.running.pop(h.id, None)
            if job is None:
                return None
            self.counters["cancelled"] += 1
            self._error(job.id, job.cls,
                        JobCancelled(f"job '{job.id}' was cancelled", job_id=job.id))
            return job.id
        if t == _HEARTBEAT:
            return None
        if t == _DISCONNECT:
            try:
                reason = Disconnect.unpack(msg.body).reason
            except ProtocolError:
                reason = ""
            del reason  # whatever the reason, registering again is the answer...
            self.connected = False
            # ...after a heartbeat interval, so a broker that refuses our READY
            # is not answered by a READY storm.
            self._ready_at = now + self.interval
            return None
        self.counters["malformed"] += 1
        return None

    def _on_job(self, h: Header, body: Frame, now: float) -> JobStart | None:
        self.counters["jobs"] += 1
        try:
            req = JobRequest.unpack(body)
        except ProtocolError as exc:
            self._error(h.id, h.cls, BadRequest(str(exc), job_id=h.id))
            return None
        if h.id in self.running:
            # A retry of a job we still run (our broker restarted and its
            # origin tried again): it joins the running one, whose answer
            # goes out when it ends.
            self.counters["joined"] += 1
            return None
        timeout = req.timeout if req.timeout is not None else self.default_timeout
        deadline = now + timeout
        self.running[h.id] = _Running(h.id, req.tool, h.cls, now, deadline)
        heapq.heappush(self._deadlines, (deadline, h.id))
        return JobStart(h.id, req.tool, req.args, deadline, h.cls, req.stream)

    # ------------------------------------------------------------- outcomes
    def done(self, jid: str, value: Any, now: float) -> None:
        """The job returned ``value``."""
        job = self.running.pop(jid, None)
        if job is None:
            return  # timed out or cancelled already: its answer was sent
        try:
            body = ResultBody(value, self.node, now - job.started).pack()
        except ProtocolError as exc:
            self._error(jid, job.cls, ToolFailed(
                f"tool '{job.tool}' returned a value that cannot be sent: {exc}", job_id=jid,
                remote_type="TypeError", node=self.node))
            return
        self.counters["results"] += 1
        frames: list[Frame] = [TAG, self._header(_RESULT, jid, job.cls), body]
        self.out.append(frames)
        recent = self._recent
        old = recent.pop(jid, None)  # (a joined retry answered twice: counted once)
        if old is not None:
            self._recent_bytes -= len(old[1][2])
        recent[jid] = (now, frames)
        self._recent_bytes += len(body)
        while recent and (len(recent) > MAX_RECENT_RESULTS
                          or self._recent_bytes > MAX_RECENT_BYTES):
            self._recent_bytes -= len(recent.pop(next(iter(recent)))[1][2])

    def fail(self, jid: str, exc: BaseException, now: float) -> None:
        """The job raised ``exc``."""
        job = self.running.pop(jid, None)
        if job is None:
            return
        if isinstance(exc, JobError):
            err = exc
        else:
            err = ToolFailed(f"{type(exc).__name__}: {exc}", job_id=jid,
                             remote_type=type(exc).__name__, node=self.node)
        self._error(jid, job.cls, err)

    def progress(self, jid: str, p: Progress) -> None:
        """Send progress (or streamed output) of a running job."""
        job = self.running.get(jid)
        if job is not None:
            self.out.append([TAG, self._header(_PROGRESS, jid, job.cls), p.pack()])

    def _error(self, jid: str, cls: int, err: JobError) -> None:
        self.counters["errors"] += 1
        body = ErrorBody(err.code, err.message, err.remote_type, err.node or self.node or None,
                         err.details).pack()
        self.out.append([TAG, self._header(_ERROR, jid, cls), body])

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> tuple[list[str], bool]:
        """Run timers.  Returns the ids of jobs that must stop (timed out) and
        whether the broker is lost (the shell then reconnects and calls
        :meth:`start`)."""
        stop: list[str] = []
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            deadline, jid = heapq.heappop(dl)
            job = self.running.get(jid)
            if job is None or job.deadline != deadline:
                continue
            del self.running[jid]
            self.counters["timeouts"] += 1
            self._error(jid, job.cls, JobTimeout(
                f"tool '{job.tool}' did not finish within {deadline - job.started:g} s",
                job_id=jid, node=self.node))
            stop.append(jid)
        if len(dl) > 2 * len(self.running) + 1024:
            self._deadlines = [(j.deadline, j.id) for j in self.running.values()]
            heapq.heapify(self._deadlines)
        if self._ready_at is not None and now >= self._ready_at:
            self._ready_at = None
            self.start(now)
        lost = False
        if now >= self._broker_expires:
            lost = True
            self.connected = False
            self.counters["reconnects"] += 1
        elif now >= self._next_heartbeat:
            self._next_heartbeat = now + self.interval
            self.out.append([TAG, self._header(_HEARTBEAT, self._mid()),
                             Heartbeat(len(self.running)).pack()])
        return stop, lost

    def next_deadline(self) -> float:
        """When :meth:`tick` must next run."""
        t = min(self._next_heartbeat, self._broker_expires)
        if self._ready_at is not None and self._ready_at < t:
            t = self._ready_at
        if self._deadlines and self._deadlines[0][0] < t:
            t = self._deadlines[0][0]
        return t

    def disconnect(self, reason: str) -> None:
        """Say goodbye to the broker (on a clean shutdown)."""
        self.out.append([TAG, self._header(_DISCONNECT, self._mid()), Disconnect(reason).pack()])
