"""The workers registered on this node, and how to reach them (no I/O).

One :class:`WorkerSession` per registered worker, in one table, indexed by
tool: what this node offers (tools, caps, load, for our LSA, placement and
QUERY), each worker's liveness, and the two ways to reach one: JOB and CANCEL
frames on the workers' socket, or the shell's callbacks for the *virtual
worker* (tools served in the broker's own process, ``Broker.register_tool``).

The pool is owned by :class:`~.local.LocalJobs` and never calls back into it:
a worker's arrival or loss changes jobs (orphans joined, jobs lost, queued
jobs refilled or failed), so the job table calls :meth:`WorkerPool.add`,
:meth:`WorkerPool.remove` and :meth:`WorkerPool.expire` and then does what
follows for its jobs.  The session lifecycle, as a whole, is written at the
top of :mod:`.local`.

Rules:

* A change of workers marks our LSA dirty (tools, caps and load are in it).
* A worker is heard at least every liveness x heartbeat interval (each of
  its messages moves its ``expires`` on: :meth:`~.local.LocalJobs.on_worker`), or
  :meth:`WorkerPool.expire` gives it up; every heartbeat interval we send
  each live worker a HEARTBEAT.
* The virtual worker (:data:`VIRTUAL_RID`) is a session like any other
  (slots, placement, queue, deadlines, cancel), but it sends and gets no
  frames and never expires: its jobs start through ``run`` and are stopped
  through ``stop``.  Neither may call back into the core: the shell runs the
  tool after the core call returns.
* A session's ``running`` set holds the ids of the jobs that take its slots:
  :meth:`WorkerPool.start` adds a job it starts (the job table adds the
  orphans a READY lists), and the job table takes each out as it ends (the
  pool, a virtual job it cancels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from ..jobs.router import NodeInfo
from ..protocol.bodies import Cancel, Disconnect, Heartbeat, Ready, ToolInfo
from ..protocol.codec import TAG
from .context import _CANCEL, _DISCONNECT, _HEARTBEAT, WORKERS, BrokerContext
from .ports import RUNNING, Advertised, Job

__all__ = [
    "VIRTUAL_RID",
    "RunLocal",
    "StopLocal",
    "WorkerPool",
    "WorkerSession",
]

#: Routing id of the virtual worker (a zero first byte: no socket peer can
#: ever have it, since ZeroMQ-chosen ids start with one and workers get those).
VIRTUAL_RID: Final = b"\x00inproc"

#: run(job id, tool, args, deadline, cls): start a job of the virtual worker.
RunLocal = Callable[[str, str, dict[str, Any], float, int], None]
#: stop(job id): the job of the virtual worker is cancelled or timed out.
StopLocal = Callable[[str], None]


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
    infos: tuple[ToolInfo, ...] = ()  # the tools of its READY (QUERY tools detail)
    #: Its READY said ``batch: true``: it may be sent BATCH messages.
    batch: bool = False

    @property
    def free(self) -> int:
        return self.slots - len(self.running)


class WorkerPool:
    """The worker sessions of this node: registry, liveness, delivery."""

    def __init__(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        self.workers: dict[bytes, WorkerSession] = {}
        #: tool -> the workers offering it, in registration order (never empty).
        self.by_tool: dict[str, list[WorkerSession]] = {}
        #: When the next HEARTBEAT round (and liveness check) is due.
        self.next_heartbeat = ctx.now + ctx.limits.heartbeat_interval
        self._tools: frozenset[str] = frozenset()
        self._caps: frozenset[str] = frozenset()
        self._run_local: RunLocal | None = None
        self._stop_local: StopLocal | None = None

    def wire(self, linkstate: Advertised) -> None:
        """Who hears that what we advertise changed."""
        self._linkstate = linkstate

    # ------------------------------------------------------------- views
    def tools(self) -> list[str]:
        return sorted(self.by_tool)

    def tool_counts(self) -> dict[str, int]:
        return {t: len(ws) for t, ws in sorted(self.by_tool.items())}

    def offers(self, tool: str) -> bool:
        return tool in self.by_tool

    def caps(self) -> list[str]:
        return sorted(self._caps)

    def load(self) -> tuple[int, int]:
        """(running, slots) over all workers."""
        running = 0
        slots = 0
        for w in self.workers.values():
            running += len(w.running)
            slots += w.slots
        return running, slots

    def worker_count(self) -> int:
        return len(self.workers)

    def info(self) -> NodeInfo:
        """What this node offers, for placement."""
        running, slots = self.load()
        return NodeInfo(self._ctx.node_id, self._tools, self._caps,
                        running / slots if slots else 0.0, len(self.workers), 0.0, 100.0,
                        local=True)

    def describe_workers(self) -> list[dict[str, Any]]:
        """The workers as QUERY "workers" shows them."""
        return [
            {"name": w.name, "pid": w.pid, "tools": sorted(w.tools), "caps": sorted(w.caps),
             "slots": w.slots, "running": len(w.running), "done": w.done}
            for w in self.workers.values()
        ]

    def catalog_workers(self) -> list[tuple[str, frozenset[str], tuple[ToolInfo, ...]]]:
        """(name, caps, READY tools) of each worker, for the tool catalog."""
        return [(w.name, w.caps, w.infos) for w in self.workers.values()]

    # ------------------------------------------------------------ registry
    def add(self, rid: bytes, ready: Ready, now: float,
            tools: frozenset[str] | None = None) -> WorkerSession:
        """Enter the worker of ``ready`` (none is registered as ``rid``; its
        ``tools``: those of ``ready`` unless given) and tell it it is registered."""
        ctx = self._ctx
        virtual = rid == VIRTUAL_RID
        w = WorkerSession(
            rid=rid,
            name=ready.worker,
            tools=tools if tools is not None else frozenset(t.name for t in ready.tools),
            caps=frozenset(ready.caps),
            slots=ready.slots,
            pid=ready.pid,
            expires=(float("inf") if virtual
                     else now + ctx.limits.liveness * ctx.limits.heartbeat_interval),
            infos=tuple(ready.tools),
            batch=ready.batch,
        )
        self.workers[rid] = w
        for tool in w.tools:
            self.by_tool.setdefault(tool, []).append(w)
        self._linkstate.mark_dirty()
        self._changed()
        if not virtual:
            # Tell the worker who we are (src) and that it is registered.
            ctx.out.append((WORKERS, [rid, TAG, ctx.header(_HEARTBEAT, ctx.next_id(), "", 0),
                                      Heartbeat(0).pack()]))
        return w

    def set_virtual(self, run: RunLocal, stop: StopLocal) -> None:
        """How the virtual worker's jobs start and stop (the job table
        registers it, as any worker: :meth:`add` with :data:`VIRTUAL_RID`)."""
        self._run_local, self._stop_local = run, stop

    def remove(self, w: WorkerSession) -> None:
        """Forget ``w`` (its jobs are the job table's to fail)."""
        self.workers.pop(w.rid, None)
        self._linkstate.mark_dirty()
        for tool in w.tools:
            lst = self.by_tool.get(tool)
            if lst is not None:
                try:
                    lst.remove(w)
                except ValueError:
                    pass
                if not lst:
                    del self.by_tool[tool]
        self._changed()

    def _changed(self) -> None:
        self._tools = frozenset(self.by_tool)
        caps: set[str] = set()
        for w in self.workers.values():
            caps |= w.caps
        self._caps = frozenset(caps)

    @staticmethod
    def pick(candidates: list[WorkerSession], caps: frozenset[str]) -> WorkerSession | None:
        """The worker of ``candidates`` with the most free slots that has ``caps``."""
        best: WorkerSession | None = None
        best_free = 0
        for w in candidates:
            free = w.slots - len(w.running)
            if free > best_free and (not caps or caps <= w.caps):
                best, best_free = w, free
        return best

    # ------------------------------------------------------------ liveness
    def expire(self, now: float) -> Iterator[WorkerSession]:
        """Every heartbeat interval: send each live worker a HEARTBEAT and
        yield each one whose silence outlived the liveness, in table order
        between the heartbeats (the caller removes it before the next one
        is visited, so what its loss sends keeps its place in ``out``)."""
        if now < self.next_heartbeat:
            return
        ctx = self._ctx
        self.next_heartbeat = now + ctx.limits.heartbeat_interval
        for w in list(self.workers.values()):
            if w.expires <= now:
                yield w
                continue
            if w.rid == VIRTUAL_RID:
                continue
            ctx.out.append((WORKERS, [w.rid, TAG,
                                      ctx.header(_HEARTBEAT, ctx.next_id(), "", 0),
                                      b""]))

    # ------------------------------------------------------------ delivery
    def start(self, job: Job, worker: WorkerSession) -> None:
        """Run ``job`` on ``worker`` (a free slot of it): it takes the slot and
        gets the JOB, or the virtual worker's ``run`` starts it."""
        job.state = RUNNING
        job.worker = worker.rid
        worker.running.add(job.id)
        if worker.rid == VIRTUAL_RID and self._run_local is not None:
            req = job.request
            if req is not None:
                self._run_local(job.id, req.tool, req.args, job.deadline, job.cls)
                return
        self._ctx.out.append((WORKERS, [worker.rid, *job.frames]))

    def cancel(self, job: Job, code: str) -> WorkerSession | None:
        """Stop ``job`` on the worker running it; the session whose slot freed
        at once (the virtual worker's: whatever it returns later is dropped),
        else None (a worker's slot stays taken until it answers the CANCEL)."""
        if job.worker == VIRTUAL_RID and self._stop_local is not None:
            w = self.workers.get(VIRTUAL_RID)
            if w is not None:
                w.running.discard(job.id)
            self._stop_local(job.id)
            return w
        if job.worker is not None and job.worker in self.workers:
            self._ctx.out.append((WORKERS, [job.worker, TAG,
                                            self._ctx.header(_CANCEL, job.id, "", job.cls),
                                            Cancel(code).pack()]))
        return None

    def disconnect(self, rid: bytes, mid: str, reason: str) -> None:
        """Send DISCONNECT(``reason``) to ``rid`` (``mid``: the message id)."""
        ctx = self._ctx
        ctx.out.append((WORKERS, [rid, TAG, ctx.header(_DISCONNECT, mid, "", 0),
                                  Disconnect(reason).pack()]))

    def disconnect_all(self, reason: str) -> None:
        """Tell every worker to go."""
        for w in self.workers.values():
            if w.rid == VIRTUAL_RID:
                continue
            self.disconnect(w.rid, self._ctx.next_id(), reason)
