"""Legacy (SSH-only) hosts this broker runs jobs on (no I/O).

A legacy host is a node of the mesh without a broker of its own: we advertise
it with an LSA of kind "ssh" linked only to us, offering :data:`LEGACY_TOOLS`
and the capability "ssh", and the shell runs its jobs over SSH.

Rules:

* Its jobs are :class:`~.local.Job` entries (``legacy`` = the host) in the
  one job table of :class:`~.local.LocalJobs`, so ids, deadlines, cancel and
  shutdown work as for any job here.
* At most ``slots`` jobs run on a host at once; the rest wait in its FIFO,
  bounded by ``max_queued_jobs``.  Starting one is the action
  ``("ssh", host, job id, tool, args, seconds left)``; stopping one is
  ``("ssh-cancel", host, job id)``.
* A routed message whose dst is one of our legacy hosts is answered in the
  host's name (src = the host), as if it had a broker.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import BadRequest, JobCancelled, JobError, Overloaded, ProtocolError, ToolNotFound
from ..protocol.bodies import ErrorBody, JobRequest, ResultBody
from ..protocol.codec import TAG, Header, encode_header
from ..protocol.frame import Frame
from ..protocol.limits import DEFAULT_TTL
from .context import _CANCEL, _ERROR, _JOB, _RESULT, BrokerContext
from .ports import QUEUED, RUNNING, Advertised, Job, JobTable, Router

__all__ = ["LEGACY_TOOLS", "LegacyHost", "LegacyHosts"]

#: What a legacy (SSH-only) host offers the mesh.
LEGACY_TOOLS: Final = ("shell", "fs.read", "fs.write")


@dataclass(slots=True)
class LegacyHost:
    """A legacy host this broker runs jobs on over SSH."""

    name: str
    slots: int
    running: set[str] = field(default_factory=set)
    queue: deque[str] = field(default_factory=deque)
    done: int = 0


class LegacyHosts:
    """The legacy hosts served by this broker, and their slots and queues."""

    #: The tools every legacy host offers.
    tools: tuple[str, ...] = LEGACY_TOOLS

    def __init__(self, ctx: BrokerContext, jobs: JobTable) -> None:
        self._ctx = ctx
        self._jobs = jobs
        self.hosts: dict[str, LegacyHost] = {}

    def wire(self, relay: Router, linkstate: Advertised) -> None:
        self._relay = relay
        self._linkstate = linkstate

    def __contains__(self, name: object) -> bool:
        return name in self.hosts

    def add(self, name: str, slots: int) -> None:
        """Run jobs for node ``name`` from this broker."""
        self.hosts[name] = LegacyHost(name, slots)
        self._linkstate.mark_dirty()

    def names(self) -> list[str]:
        return list(self.hosts)

    def loads(self) -> list[tuple[str, float, int]]:
        """(host, busy fraction of its slots, slots) of every host, for its LSA."""
        return [(lg.name, round(len(lg.running) / lg.slots, 3), lg.slots)
                for lg in self.hosts.values()]

    def stats(self) -> dict[str, dict[str, int]]:
        return {lg.name: {"running": len(lg.running), "queued": len(lg.queue),
                          "done": lg.done, "slots": lg.slots}
                for lg in self.hosts.values()}

    def accept(self, name: str, client: bytes, cls: int, src: str, jid: str,
               req: JobRequest, now: float, *, remote: bool,
               origin: bool = False) -> JobError | None:
        """Take a job to run on legacy host ``name``; the error when refused."""
        limits = self._ctx.limits
        lg = self.hosts[name]
        if req.tool not in LEGACY_TOOLS:
            return ToolNotFound(f"legacy host '{name}' offers only {', '.join(LEGACY_TOOLS)},"
                                f" not '{req.tool}'", job_id=jid, node=name)
        if jid in self._jobs:
            return BadRequest(f"job id '{jid}' is already in use", job_id=jid)
        if len(lg.queue) >= limits.max_queued_jobs:
            return Overloaded(f"legacy host '{name}' has {len(lg.queue)} jobs queued",
                              job_id=jid, node=name)
        timeout = req.timeout if req.timeout is not None else limits.default_timeout
        job = Job(jid, client, cls, req.tool, frozenset(), [], now + timeout, now,
                  src, remote=remote, origin=origin, legacy=name, request=req)
        self._jobs.add(job)
        if len(lg.running) < lg.slots:
            self._start(lg, job)
        else:
            lg.queue.append(jid)
        return None

    def _start(self, lg: LegacyHost, job: Job) -> None:
        job.state = RUNNING
        lg.running.add(job.id)
        req = job.request
        if req is None:  # pragma: no cover - every legacy job carries its request
            return
        self._ctx.actions.append(("ssh", lg.name, job.id, req.tool, req.args,
                                  max(0.0, job.deadline - self._ctx.now)))

    def freed(self, job: Job) -> None:
        """``job`` left its host's slot: start the next one waiting."""
        lg = self.hosts.get(job.legacy or "")
        if lg is None:
            return
        lg.running.discard(job.id)
        while lg.queue and len(lg.running) < lg.slots:
            nxt = self._jobs.get(lg.queue.popleft())
            if nxt is not None and nxt.state == QUEUED:
                self._start(lg, nxt)

    def deliver(self, h: Header, frames: list[Frame], now: float) -> None:
        """A routed JOB or CANCEL for one of our legacy hosts."""
        if h.type == _CANCEL:
            victim = self._jobs.get(h.id)
            if victim is not None and victim.legacy == h.dst and victim.src == h.src:
                self._jobs.abort(victim, JobCancelled(
                    f"job '{h.id}' was cancelled by its origin", job_id=h.id))
            return
        if h.type != _JOB:
            return
        self._ctx.counters["jobs_received"] += 1
        try:
            req = JobRequest.unpack(frames[2])
        except ProtocolError as exc:
            self._relay.route_error(h.src, h.id, h.cls, BadRequest(str(exc), job_id=h.id),
                                    h.dst)
            return
        err = self.accept(h.dst, b"", h.cls, h.src, h.id, req, now, remote=True)
        if err is not None:
            self._relay.route_error(h.src, h.id, h.cls, err, h.dst)

    def done(self, jid: str, value: Any, error: JobError | None, duration: float) -> None:
        """The shell finished running job ``jid`` on its legacy host."""
        ctx = self._ctx
        job = self._jobs.get(jid)
        if job is None or job.legacy is None:
            return  # timed out or cancelled meanwhile: answered already
        self._jobs.finish(jid)
        self.freed(job)
        lg = self.hosts.get(job.legacy)
        if lg is not None:
            lg.done += 1
        if error is None:
            try:
                body = ResultBody(value, job.legacy, duration).pack()
            except ProtocolError as exc:
                error = BadRequest(f"result cannot be sent: {exc}", job_id=jid)
        if error is not None:
            t = _ERROR
            body = ErrorBody(error.code, error.message, error.remote_type, job.legacy,
                             error.details).pack()
            if not job.origin:
                ctx.counters["jobs_failed"] += 1
        else:
            t = _RESULT
            if not job.origin:
                ctx.counters["jobs_completed"] += 1
        h = Header(t, jid, job.legacy, job.src, DEFAULT_TTL, int(ctx.wall() * 1000),
                   job.cls, None)
        self._jobs.reply(job, [b"", TAG, encode_header(h), body], h)
