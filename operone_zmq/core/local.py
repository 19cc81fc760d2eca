"""The job table of this node, and the messages of its workers (no I/O).

Every job that runs *here* has one :class:`Job` in this table: jobs of local
clients, attempts of our own origin table, jobs of other origins, and jobs run
on one of our legacy (SSH) hosts.  The table owns their deadlines; the kind of
the job (``origin``, ``remote``, ``legacy``) says who hears its one answer.

The workers' sessions are in :class:`~.workerpool.WorkerPool` (``pool``),
which this table owns: the pool keeps the registry (what this node offers,
for our LSA, placement and QUERY), liveness and delivery to a worker; every
worker message comes in here (most are answers of jobs), and each session
transition below is made here, since each one changes jobs too.

Worker session lifecycle::

    (unknown) --READY--> READY --(no message for liveness x interval)--> gone
    READY --READY--> READY (re-registration: jobs it was running are lost)
    (unknown) --READY listing running jobs--> READY, those jobs kept as
        *orphans* (their slots taken): after our restart, a worker that
        survived us still runs them; a JOB with such an id joins the running
        one (no second run), and an orphan's RESULT is kept for
        ``result_cache_seconds`` for the retry that will ask for it
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

Rules:

* Every job accepted ends in exactly one reply to its submitter, through
  :meth:`LocalJobs.fail` or :meth:`LocalJobs.reply`, which pick the
  addressee by the job's kind: the origin table, the remote origin (through
  :class:`~.remote.RemoteJobs`) or the local client.
* Queued jobs wait per (tool, caps); a freed slot takes the oldest job it can
  run.  A job whose tool nobody offers any more fails at once (NoRoute: it
  never started, so its origin may place it elsewhere).
* For :data:`WORKER_GRACE_INTERVALS` heartbeat liveness periods after this
  broker started, a remote job for a tool no worker offers is answered
  NoRoute (transient: workers register again after our restart), not
  ``tool_not_found``.
* Tools served in the broker's own process (``Broker.register_tool``) are one
  *virtual worker* (:meth:`LocalJobs.add_virtual_worker`): a session like any
  other (slots, placement, queue, deadlines, cancel), but its jobs start
  through the shell's ``run`` callback with the request already decoded (see
  :mod:`.workerpool`), and its outcome comes back through
  :meth:`LocalJobs.virtual_done`, which packs the RESULT/ERROR once.
* A job run here for another broker leaves a record in :attr:`LocalJobs.
  finished` when it is answered (QUERY jobs; our own origin jobs are
  recorded by the origin table, once).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from typing import Any, Final, cast

from ..errors import (
    JobCancelled,
    JobError,
    JobTimeout,
    NoRoute,
    Overloaded,
    ProtocolError,
    ToolFailed,
    ToolNotFound,
    WorkerLost,
)
from ..jobs.router import NodeInfo
from ..protocol.bodies import ErrorBody, JobRequest, Ready, ResultBody
from ..protocol.codec import TAG, Header, decode, decode_header, encode_header, make_header
from ..protocol.frame import Frame
from .context import (
    _DISCONNECT,
    _ERROR,
    _HEARTBEAT,
    _JOB,
    _PROGRESS,
    _READY,
    _RESULT,
    CLASS_NAMES,
    BrokerContext,
)
from .jobrecords import FinishedJobs, JobRecord, error_map
from .ports import QUEUED, RUNNING, Advertised, Job, LegacyRuns, OriginAnswers, RemoteAnswers
from .workerpool import VIRTUAL_RID, RunLocal, StopLocal, WorkerPool, WorkerSession

__all__ = [
    "MAX_ORPHAN_RESULTS",
    "QUEUED",
    "RUNNING",
    "WORKER_GRACE_INTERVALS",
    "Job",
    "LocalJobs",
]

#: Worker liveness periods (liveness x heartbeat interval) after our start in
#: which a missing tool is transient: a worker that survived our restart needs
#: about one to notice and register again.
WORKER_GRACE_INTERVALS: Final = 2

#: Results of orphan jobs (run by a worker for our previous incarnation) kept
#: for the retry that asks for them; oldest out first.
MAX_ORPHAN_RESULTS: Final = 10_000


class LocalJobs:
    """Every job that runs on this node, on the workers of its pool."""

    def __init__(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        #: The workers registered here (their sessions, liveness, delivery).
        self.pool = WorkerPool(ctx)
        self._jobs: dict[str, Job] = {}
        self._queues: dict[tuple[str, frozenset[str]], deque[str]] = {}
        self._queued = 0
        self._deadlines: list[tuple[float, str]] = []
        self._started = ctx.now
        #: job id -> the worker still running it for our previous incarnation.
        self._orphans: dict[str, bytes] = {}
        #: job id -> (expiry, RESULT frames) of orphans that finished.
        self._orphan_results: OrderedDict[str, tuple[float, list[Frame]]] = OrderedDict()
        #: Records of jobs run here for other brokers, once answered (QUERY jobs).
        self.finished = FinishedJobs()

    def wire(self, origin: OriginAnswers, remote: RemoteAnswers, legacy: LegacyRuns,
             linkstate: Advertised) -> None:
        """Who hears the answers of jobs that are not a local client's (and
        ``linkstate``, that the pool's workers changed)."""
        self._origin = origin
        self._remote = remote
        self._legacy = legacy
        self.pool.wire(linkstate)

    # ------------------------------------------------------------ the table
    def __contains__(self, jid: str) -> bool:
        return jid in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, jid: str) -> Job | None:
        return self._jobs.get(jid)

    def add(self, job: Job) -> None:
        """Enter a job that runs elsewhere than on a worker (a legacy host)."""
        self._jobs[job.id] = job
        heapq.heappush(self._deadlines, (job.deadline, job.id))

    def finish(self, jid: str) -> None:
        """Forget a job that has been answered (its legacy host finished it)."""
        del self._jobs[jid]

    @property
    def queued(self) -> int:
        return self._queued

    def state_of(self, jid: str) -> str | None:
        """"queued" or "running" for a job in the table here, else None."""
        job = self._jobs.get(jid)
        if job is None:
            return None
        return "running" if job.state == RUNNING else "queued"

    def _record(self, job: Job) -> JobRecord:
        ctx = self._ctx
        r = JobRecord(job.id, job.tool, job.src or None,
                      ctx.wall() - (ctx.now - job.submitted), CLASS_NAMES[job.cls],
                      round(job.deadline - job.submitted, 6), job.legacy or ctx.node_id,
                      "running" if job.state == RUNNING else "queued")
        r.attempts = 1
        return r

    def for_others(self) -> list[JobRecord]:
        """Records of the jobs in progress here for other brokers."""
        return [self._record(j) for j in self._jobs.values() if j.remote and not j.origin]

    def _finished_for_other(self, job: Job, state: str, error: dict[str, str] | None,
                            result: Frame | None = None) -> None:
        r = self._record(job)
        r.finish(state, self._ctx.wall(), error=error, result=result)
        self.finished.add(r)

    def info(self) -> NodeInfo:
        """What this node offers, for placement."""
        return self.pool.info()

    # ------------------------------------------------------------- accepting
    def accept(
        self, client: bytes, cls: int, src: str, jid: str, req: JobRequest,
        job_frames: list[Frame], now: float, *, remote: bool, origin: bool = False,
    ) -> JobError | None:
        """Take a job to run on this node; the error to answer when refused."""
        node_id = self._ctx.node_id
        limits = self._ctx.limits
        caps = frozenset(req.caps)
        if (self._orphans or self._orphan_results) and self._join_orphan(
                client, cls, src, jid, req, job_frames, now, remote, origin):
            return None
        pool = self.pool
        candidates = pool.by_tool.get(req.tool)
        if not candidates:
            grace = (WORKER_GRACE_INTERVALS * limits.liveness * limits.heartbeat_interval)
            if remote and now - self._started < grace:
                return NoRoute(
                    f"node '{node_id}' started {now - self._started:.1f} s ago and no worker"
                    f" offering tool '{req.tool}' has registered yet", job_id=jid,
                    node=node_id, details={"transient": "starting"})
            return ToolNotFound(
                f"no worker on node '{node_id}' offers tool '{req.tool}'", job_id=jid,
                node=node_id)
        if caps and not any(caps <= w.caps for w in candidates):
            return ToolNotFound(
                f"no worker on node '{node_id}' offers tool '{req.tool}' with capabilities"
                f" {sorted(caps)}", job_id=jid, node=node_id)
        if len(self._jobs) >= limits.max_jobs:
            return Overloaded(
                f"node '{node_id}' has {len(self._jobs)} jobs in progress (limit"
                f" {limits.max_jobs})", job_id=jid, node=node_id)
        timeout = req.timeout if req.timeout is not None else limits.default_timeout
        job = Job(jid, client, cls, req.tool, caps, job_frames, now + timeout, now, src,
                  remote=remote, origin=origin, request=req)
        worker = pool.pick(candidates, caps)
        if worker is None:
            if self._queued >= limits.max_queued_jobs:
                return Overloaded(
                    f"node '{node_id}' has {self._queued} jobs queued (limit"
                    f" {limits.max_queued_jobs}); retry later", job_id=jid,
                    node=node_id)
            key = (req.tool, caps)
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = deque()
            q.append(jid)
            self._queued += 1
        else:
            pool.start(job, worker)
        self._jobs[jid] = job
        heapq.heappush(self._deadlines, (job.deadline, jid))
        return None

    def _join_orphan(self, client: bytes, cls: int, src: str, jid: str, req: JobRequest,
                     job_frames: list[Frame], now: float, remote: bool,
                     origin: bool) -> bool:
        """A job this node's previous incarnation ran: join the worker still
        running it, or answer it from the orphan's result.  True when done."""
        limits = self._ctx.limits
        timeout = req.timeout if req.timeout is not None else limits.default_timeout
        cached = self._orphan_results.pop(jid, None)
        if cached is not None and cached[0] > now:
            job = Job(jid, client, cls, req.tool, frozenset(req.caps), job_frames,
                      now + timeout, now, src, remote=remote, origin=origin)
            self._ctx.counters["orphans_answered"] += 1
            self.reply(job, cached[1], decode_header(cached[1][2]))
            return True
        rid = self._orphans.pop(jid, None)
        w = self.pool.workers.get(rid) if rid is not None else None
        if w is None or jid not in w.running:
            return False
        job = Job(jid, client, cls, req.tool, frozenset(req.caps), job_frames, now + timeout,
                  now, src, state=RUNNING, worker=w.rid, remote=remote, origin=origin)
        self._jobs[jid] = job
        heapq.heappush(self._deadlines, (job.deadline, jid))
        self._ctx.counters["orphans_joined"] += 1
        return True

    # ------------------------------------------------------------- answering
    def fail(self, job: Job, err: JobError, silent: bool = False) -> None:
        """End ``job`` with ``err`` sent to its submitter."""
        self._jobs.pop(job.id, None)
        if job.legacy is not None:
            self._legacy.freed(job)
        if silent:
            return
        if job.origin:
            self._origin.attempt_failed(job.id, err)
            return
        self._ctx.counters["jobs_failed"] += 1
        if job.remote:
            self._finished_for_other(job, "cancelled" if err.code == "cancelled" else "failed",
                                     error_map(err))
            self._remote.failed(job, err)
        else:
            self._ctx.send_error(job.cls, job.client, job.id, job.src, job.cls, err)

    def reply(self, job: Job, frames: list[Frame], h: Header) -> None:
        """Send a RESULT/ERROR/PROGRESS (frames: routing id, tag, header, body)
        for ``job`` to its submitter."""
        if job.origin:
            self._origin.reply(job.id, h.type, frames[1:], self._ctx.now,
                               job.legacy or self._ctx.node_id)
            return
        if not job.remote:
            self._ctx.out.append((job.cls, [job.client, *frames[1:]]))
            return
        if h.type in (_RESULT, _ERROR) and job.tool:  # (not a cached answer's stub)
            if h.type == _RESULT:
                self._finished_for_other(job, "done", None, frames[3])
            else:
                try:
                    e = ErrorBody.unpack(frames[3])
                    error = error_map(e)
                except ProtocolError:
                    error = {"code": "protocol", "message": "unreadable error"}
                self._finished_for_other(
                    job, "cancelled" if error["code"] == "cancelled" else "failed", error)
        self._remote.reply(job, frames, h)

    def abort(self, job: Job, err: JobError, silent: bool = False) -> None:
        """Stop ``job`` wherever it is and answer its submitter with ``err``
        (``silent``: answer nobody)."""
        refill: WorkerSession | None = None
        if job.state == QUEUED:
            q = self._queues.get((job.tool, job.caps))
            if q is not None:
                try:
                    q.remove(job.id)
                    self._queued -= 1
                except ValueError:
                    pass
        elif job.legacy is not None:
            self._ctx.actions.append(("ssh-cancel", job.legacy, job.id))
        elif job.worker is not None:
            refill = self.pool.cancel(job, err.code)
        self.fail(job, err, silent)
        if refill is not None and self._queued:
            self._fill(refill)

    def supersede(self, jid: str) -> None:
        """Stop the origin table's attempt ``jid`` here without answering it."""
        job = self._jobs.get(jid)
        if job is not None and job.origin:
            job.origin = False  # its answer must not reach the origin table
            job.client = b""
            self.abort(job, JobCancelled("superseded", job_id=jid), silent=True)

    # ------------------------------------------------------------- workers
    def on_worker(self, frames: list[Frame], now: float) -> None:
        """Handle one message from a local worker."""
        ctx = self._ctx
        rid = cast(bytes, frames[0])  # (the first frame: always bytes)
        try:
            msg = decode(frames, 1)
        except ProtocolError:
            ctx.counters["malformed"] += 1
            return  # a broken worker: it is heard from no further than this
        h = msg.header
        t = h.type
        w = self.pool.workers.get(rid)
        limits = ctx.limits
        if t in (_RESULT, _ERROR):
            if w is not None:
                w.expires = now + limits.liveness * limits.heartbeat_interval
            self._answered(w, rid, h, frames, msg.body)
            if w is None:
                self.pool.disconnect(rid, h.id, "unknown worker; send READY")
            return
        if t == _PROGRESS:
            job = self._jobs.get(h.id)
            if job is not None and job.worker == rid:
                self.reply(job, frames, h)
            if w is not None:
                w.expires = now + limits.liveness * limits.heartbeat_interval
            return
        if t == _HEARTBEAT:
            if w is None:
                self.pool.disconnect(rid, h.id, "unknown worker; send READY")
            else:
                w.expires = now + limits.liveness * limits.heartbeat_interval
            return
        if t == _READY:
            try:
                ready = Ready.unpack(msg.body)
            except ProtocolError as exc:
                ctx.counters["malformed"] += 1
                self.pool.disconnect(rid, h.id, f"bad READY: {exc}")
                return
            self._register(rid, ready, now)
            return
        if t == _DISCONNECT:
            if w is not None:
                self._remove_worker(w, "the worker disconnected")
            return
        ctx.counters["malformed"] += 1

    def _answered(self, w: WorkerSession | None, rid: bytes, h: Header, frames: list[Frame],
                  body: Frame) -> None:
        """RESULT/ERROR ``h`` (frames: routing id, tag, header, body) from worker
        ``rid`` (its session ``w``, when registered)."""
        ctx = self._ctx
        t = h.type
        if w is not None:
            w.running.discard(h.id)
            w.done += 1
        job = self._jobs.get(h.id)
        if job is None and t == _RESULT:
            # An orphan's result, or one a worker sends again after our
            # restart (or before it registered again): kept for the
            # retry that will ask for it.
            self._orphans.pop(h.id, None)
            cache = self._orphan_results
            cache[h.id] = (ctx.now + ctx.limits.result_cache_seconds, frames)
            while len(cache) > MAX_ORPHAN_RESULTS:
                cache.popitem(last=False)
        if job is not None and job.worker == rid:
            del self._jobs[h.id]
            if not job.origin:
                ctx.counters["jobs_completed" if t == _RESULT else "jobs_failed"] += 1
                if t == _ERROR:
                    self._count_error(body)
            self.reply(job, frames, h)
        else:
            ctx.counters["late_replies"] += 1
        if w is not None and self._queued:
            self._fill(w)

    # ------------------------------------------------------- virtual worker
    def add_virtual_worker(self, name: str, tools: frozenset[str], slots: int, pid: int,
                           run: RunLocal, stop: StopLocal) -> None:
        """Serve ``tools`` in the broker's own process: jobs start through
        ``run`` and end with :meth:`virtual_done` (see the rules above)."""
        self.pool.set_virtual(run, stop)
        ready = Ready(name, (), (), slots, pid)
        self._register(VIRTUAL_RID, ready, self._ctx.now, tools=tools)

    def virtual_done(self, jid: str, value: Any, error: JobError | None,
                     duration: float) -> None:
        """The virtual worker's job ``jid`` returned ``value`` or failed with
        ``error``; a job answered meanwhile (timed out, cancelled) is ignored
        as a late reply."""
        ctx = self._ctx
        w = self.pool.workers.get(VIRTUAL_RID)
        job = self._jobs.get(jid)
        if w is None or job is None or job.worker != VIRTUAL_RID or jid not in w.running:
            ctx.counters["late_replies"] += 1
            return
        if error is None:
            try:
                body = ResultBody(value, ctx.node_id, duration).pack()
                t = _RESULT
            except ProtocolError as exc:
                error = ToolFailed(
                    f"tool '{job.tool}' returned a value that cannot be sent: {exc}",
                    job_id=jid, remote_type="TypeError", node=ctx.node_id)
        if error is not None:
            t = _ERROR
            body = ErrorBody(error.code, error.message, error.remote_type,
                             error.node or ctx.node_id, error.details).pack()
        # The header a worker would have sent: from the worker, to this broker.
        h = make_header(t, jid, w.name, ctx.node_id, 1, int(ctx.wall() * 1000), job.cls, None)
        self._answered(w, VIRTUAL_RID, h, [VIRTUAL_RID, TAG, encode_header(h), body], body)

    def _count_error(self, body: Frame) -> None:
        try:
            code = ErrorBody.unpack(body).code
        except ProtocolError:
            code = "protocol"
        self._ctx.count_error(code)

    def _register(self, rid: bytes, ready: Ready, now: float,
                  tools: frozenset[str] | None = None) -> None:
        """A worker's READY (or the virtual worker's): it replaces the session
        of the same ``rid``, takes the orphans it lists, and the queue."""
        pool = self.pool
        old = pool.workers.get(rid)
        if old is not None:
            self._remove_worker(old, "the worker registered again (it restarted)")
        w = pool.add(rid, ready, now, tools)
        for jid in ready.running[:w.slots]:
            if jid not in self._jobs:
                # Running for our previous incarnation (we restarted, it did not).
                w.running.add(jid)
                self._orphans[jid] = rid
        if self._queued:
            self._fill(w)

    def _remove_worker(self, w: WorkerSession, reason: str) -> None:
        """Forget ``w``: the jobs it ran are lost, and queued jobs whose tool
        nobody offers any more fail."""
        node_id = self._ctx.node_id
        pool = self.pool
        pool.remove(w)
        for jid in sorted(w.running):
            if self._orphans.get(jid) == w.rid:
                del self._orphans[jid]
            job = self._jobs.get(jid)
            if job is not None and job.worker == w.rid:
                self.fail(job, WorkerLost(
                    f"worker '{w.name}' (pid {w.pid}) on node '{node_id}' was lost while"
                    f" running job '{jid}': {reason}", job_id=jid, node=node_id))
        w.running.clear()
        # Queued jobs whose tool nobody offers any more fail now, not at their deadline.
        for key in [k for k in self._queues if k[0] not in pool.by_tool]:
            for jid in self._queues.pop(key):
                self._queued -= 1
                job = self._jobs.get(jid)
                if job is not None:
                    # Never started: the origin may place it elsewhere.
                    self.fail(job, NoRoute(
                        f"no worker on node '{node_id}' offers tool '{key[0]}' any more",
                        job_id=jid, node=node_id))

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
            self.pool.start(self._jobs[jid], w)

    def on_unroutable(self, frames: list[Frame],
                      batch: list[list[Frame]] | None = None) -> None:
        """The shell could not deliver ``frames`` to a worker (it is gone);
        ``batch``: the messages (tag first) of the BATCH ``frames`` was."""
        w = self.pool.workers.get(cast(bytes, frames[0]))
        if w is None:
            return
        # Every JOB never delivered goes back to the head of its queue, in order.
        for m in reversed(batch) if batch is not None else [frames[1:]]:
            try:
                h = decode_header(m[1])
            except (ProtocolError, IndexError):
                continue
            if h.type != _JOB:
                continue
            job = self._jobs.get(h.id)
            if job is not None and job.worker == w.rid:
                w.running.discard(job.id)
                job.state, job.worker = QUEUED, None
                self._queues.setdefault((job.tool, job.caps), deque()).appendleft(job.id)
                self._queued += 1
        self._remove_worker(w, "its connection is gone")
        self._ctx.counters["workers_lost"] += 1
        for other in list(self.pool.workers.values()):
            if self._queued:
                self._fill(other)

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        """Heartbeats, worker liveness and job deadlines."""
        ctx = self._ctx
        limits = ctx.limits
        for w in self.pool.expire(now):
            ctx.counters["workers_lost"] += 1
            silence = limits.liveness * limits.heartbeat_interval
            self._remove_worker(w, f"no heartbeat within {silence:g} s")
        cache = self._orphan_results
        while cache and next(iter(cache.values()))[0] <= now:
            cache.popitem(last=False)
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            deadline, jid = heapq.heappop(dl)
            job = self._jobs.get(jid)
            if job is None or job.deadline != deadline:
                continue
            ctx.counters["jobs_timed_out"] += 1
            self.abort(job, JobTimeout(
                f"job '{jid}' ({job.tool}) did not finish within"
                f" {deadline - job.submitted:g} s on node '{ctx.node_id}'", job_id=jid,
                node=ctx.node_id))
        # Drop stale heap entries so the heap stays as small as the job table.
        if len(dl) > 2 * len(self._jobs) + 1024:
            self._deadlines = [(j.deadline, j.id) for j in self._jobs.values()]
            heapq.heapify(self._deadlines)

    def next_deadline(self) -> float:
        t = self.pool.next_heartbeat
        if self._deadlines and self._deadlines[0][0] < t:
            t = self._deadlines[0][0]
        return t

    # ------------------------------------------------------------- shutdown
    def stop_jobs(self, reason: str) -> None:
        """Answer every job in progress with an error."""
        node_id = self._ctx.node_id
        for job in list(self._jobs.values()):
            if job.state == RUNNING:
                # It may have started: the origin must not re-run it unless idempotent.
                self.abort(job, WorkerLost(f"job '{job.id}' was stopped while running:"
                                           f" {reason}", job_id=job.id, node=node_id))
            else:
                self.abort(job, NoRoute(f"job '{job.id}' was stopped before it started:"
                                        f" {reason}", job_id=job.id, node=node_id))
