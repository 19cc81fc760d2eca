"""The origin table: jobs this broker's clients submitted, to their one answer (no I/O).

Each entry (:class:`Origin`) lives from the client's JOB to the one RESULT or
ERROR the client gets, over one or more *attempts*, each placed on a node:

    JOB --place--> attempt on this node | a legacy host of ours | a remote node
    attempt --RESULT--> answer (with "attempts" when there were several)
    attempt --ERROR / timeout / target unreachable / target restarted-->
                                                    classified (_failed):
        retryable and retries left     --> backoff, place again elsewhere
        it may have started, not idempotent --> NotIdempotent answer
        otherwise                      --> the error is the answer
    CANCEL from its client --> the attempt is stopped, JobCancelled answer

Rules:

* Placement: a job naming a node (``on``) goes there; otherwise, when no other
  node offers the tool, here; otherwise :class:`~operone_zmq.jobs.router.
  ToolRouter` picks among the reachable nodes advertising it (legacy SSH hosts
  only for jobs that require "ssh"), excluding nodes already tried.
* An attempt's outcome is classified in one place, :meth:`OriginTable._failed`:
  transient errors (:func:`~operone_zmq.errors.is_transient`: codes in
  :data:`RETRYABLE`, and a ``tool_not_found`` from another node, whose offer
  changed since its LSA) may be retried; those in :data:`MAYBE_STARTED` are
  not retried for a job that is not idempotent.  Placement that finds the
  tool only on unreachable nodes is transient too (NoRoute), not
  ``tool_not_found``.
* Retry schedule (docs/protocol.md §18.4): retry ``n`` waits
  ``min(RETRY_MAX, RETRY_BASE * 2**(n-1))`` when a node not tried yet can
  take it; when it can only go back to a node already tried (the job names
  its node, or every qualifying node was tried), it waits at least the
  failure detection time, ``peer_liveness x peer_interval`` (3 s by
  default): sooner, the node is still the one that failed.
* Incarnations: an attempt on another node records that node's incarnation
  (its broker run); when the node shows a new one (HELLO/WELCOME or a newer
  LSA, :meth:`OriginTable.node_restarted`), the attempt failed at once
  (``worker_lost``, may have started), instead of at its deadline.
* A RESULT of an earlier attempt is still the job's result (the current
  attempt is cancelled); an ERROR of an attempt we gave up on is ignored,
  except no_route from a relay.
* ``in_flight`` counts the attempts per target node (placement weighs it).
* Start-up grace: within ``limits.worker_grace`` s of the broker's start and
  while fewer than ``limits.expected_workers`` of this node's workers have
  registered, a job that would fail with ToolNotFound (nobody offers its
  tool yet) *waits* (at most :data:`MAX_WAITING_FOR_WORKERS` jobs) and is
  placed again whenever a worker speaks, and for the last time when the
  grace ends.
* Each remote attempt remembers the path it was sent on.  When the routes
  change (:meth:`OriginTable.topology_changed`), an attempt whose target is
  unreachable has failed (classified as above); an attempt whose target is
  still reachable but whose path lost a node or a link (or whose first hop
  is no longer up) is *re-sent* at once on the new path, same job id: the
  message (or its answer) may have been lost with the dead relay, and the
  target runs one attempt once (its dedup answers a repeat from its result
  cache, or ignores it while it runs), so this is safe for jobs that are
  not idempotent.  The attempt's deadline starts again.
* The job's timeout is one deadline across all its attempts: a retry runs
  with what is left of it, and none is made once nothing is left.
* Budgets: a client connection has at most ``limits.max_client_jobs`` jobs
  and ``limits.max_client_bytes`` body bytes in flight; a key that is not an
  operator has the same budget for all its connections together (else one
  submit key with many connections multiplies it).  Operator keys (the
  node's own key, shared by the local CLI and tools) are bounded per
  connection only.
* Each job has a :class:`~.jobrecords.JobRecord` (what QUERY jobs shows);
  when the job is answered, its record goes to :attr:`OriginTable.finished`.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from ..errors import (
    MAYBE_STARTED_CODES,
    TRANSIENT_CODES,
    BadRequest,
    JobCancelled,
    JobError,
    JobTimeout,
    NoRoute,
    NotIdempotent,
    Overloaded,
    ProtocolError,
    Refused,
    ToolNotFound,
    WorkerLost,
    error_from_wire,
    is_transient,
)
from ..jobs.router import NodeInfo, RouteDecision, ToolRouter
from ..protocol.bodies import Cancel, ErrorBody, JobRequest, ResultBody
from ..protocol.codec import TAG, Header, encode_header
from ..protocol.frame import Frame
from ..protocol.limits import DEFAULT_TTL
from ..routing.dijkstra import RoutingTable
from ..routing.lsdb import LinkStateDB
from . import outbound as outbound_module
from .access import OPERATOR, Grant
from .context import _CANCEL, _JOB, _PROGRESS, _RESULT, CLASS_NAMES, BrokerContext
from .jobrecords import FinishedJobs, JobRecord, error_map
from .ports import JobTable, LegacyHostsView, Router

__all__ = [
    "MAYBE_STARTED",
    "RETRYABLE",
    "RETRY_BASE",
    "RETRY_MAX",
    "Origin",
    "OriginTable",
]

#: Error codes after which another attempt may succeed elsewhere.
RETRYABLE: Final = TRANSIENT_CODES
#: Error codes after which the job may have started (matters when it is not
#: idempotent: it is then not run again).
MAYBE_STARTED: Final = MAYBE_STARTED_CODES
#: Backoff before attempt n+1: RETRY_BASE * 2**(n-1), at most RETRY_MAX (s);
#: at least the failure detection time when it goes back to a node tried.
RETRY_BASE: Final = 0.05
RETRY_MAX: Final = 2.0
#: Jobs that may wait for this node's workers during the start-up grace:
#: a burst of clients reconnecting to a restarted node, not a backlog.
MAX_WAITING_FOR_WORKERS: Final = 10_000


# (init=False and an __init__ of its own, here and in the other classes made
# once per job: compiled by mypyc, a dataclass's generated __init__ stays
# interpreted, 6x the cost of a compiled one; in pure Python they are alike.)
@dataclass(slots=True, init=False)
class Origin:
    """A local client's job, from submission to its one answer: where it was
    placed, how many attempts it had, and what is left of its retries."""

    id: str
    client: bytes
    cls: int
    src: str
    req: JobRequest
    body: Frame
    ts: int
    submitted: float
    retries_left: int
    attempts: int
    target: str | None
    tried: list[str]
    deadline: float  # of the current remote attempt
    retry_at: float | None
    placement: str
    #: What the submitting client key may do (its role travels with the job).
    grant: Grant
    #: The path the current remote attempt was sent on (this node first).
    path: tuple[str, ...]
    #: The incarnation of ``target`` when the attempt was sent (0: unknown).
    incarnation: int
    record: JobRecord | None  # what QUERY jobs shows of it
    attempt_body: bytes | None  # a retry's JOB body (its timeout: what is left)

    def __init__(self, id: str, client: bytes, cls: int, src: str, req: JobRequest,
                 body: Frame, ts: int, submitted: float, retries_left: int,
                 attempts: int = 0, target: str | None = None,
                 tried: list[str] | None = None, deadline: float = 0.0,
                 retry_at: float | None = None, placement: str = "",
                 grant: Grant = OPERATOR, path: tuple[str, ...] = (),
                 incarnation: int = 0, record: JobRecord | None = None,
                 attempt_body: bytes | None = None) -> None:
        self.id = id
        self.client = client
        self.cls = cls
        self.src = src
        self.req = req
        self.body = body
        self.ts = ts
        self.submitted = submitted
        self.retries_left = retries_left
        self.attempts = attempts
        self.target = target
        self.tried = [] if tried is None else tried
        self.deadline = deadline
        self.retry_at = retry_at
        self.placement = placement
        self.grant = grant
        self.path = path
        self.incarnation = incarnation
        self.record = record
        self.attempt_body = attempt_body


class OriginTable:
    """Placement, attempts, retries, failover and cancel of our clients' jobs."""

    def __init__(self, ctx: BrokerContext) -> None:
        self._ctx = ctx
        self._origins: dict[str, Origin] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._retries: list[tuple[float, str]] = []
        self._in_flight: dict[str, int] = {}
        #: Per client connection (routing id): [jobs in flight, body bytes].
        self._use: dict[bytes, list[int]] = {}
        #: The same per key that is not an operator (its fingerprint).
        self._key_use: dict[str, list[int]] = {}
        self.router = ToolRouter()
        self._remote_cache_version = -1
        self._remote_nodes: list[NodeInfo] = []
        #: Tools other nodes offer (from _remote_nodes): by ordinary nodes,
        #: and by legacy SSH hosts (only to jobs that require "ssh").
        self._remote_tools: frozenset[str] = frozenset()
        self._ssh_tools: frozenset[str] = frozenset()
        self._started = ctx.now
        #: Jobs waiting for this node's workers to register (start-up grace).
        self.waiting: list[str] = []
        #: Records of our jobs that were answered, newest last (QUERY jobs).
        self.finished = FinishedJobs()

    def wire(self, local: JobTable, legacy: LegacyHostsView, relay: Router,
             lsdb: LinkStateDB, routes: RoutingTable,
             health: Callable[[str], float],
             incarnation_of: Callable[[str], int] = lambda node: 0) -> None:
        """``health``: 0-100, the QoS health of a first hop (for placement);
        ``incarnation_of``: the incarnation last seen of a node (0: unknown)."""
        self._incarnation_of = incarnation_of
        self._local = local
        self._legacy = legacy
        self._relay = relay
        self._lsdb = lsdb
        self._routes = routes
        self._health = health

    def __contains__(self, jid: str) -> bool:
        return jid in self._origins

    def __len__(self) -> int:
        return len(self._origins)

    def in_flight(self) -> dict[str, int]:
        return dict(self._in_flight)

    def clients_with_jobs(self) -> set[bytes]:
        """Routing ids of the clients that wait for an answer here."""
        return {o.client for o in self._origins.values()}

    def jobs(self) -> list[tuple[JobRecord, str | None]]:
        """The records of the jobs in flight, each with its current target
        (None: waiting to be placed again)."""
        return [(o.record, o.target) for o in self._origins.values() if o.record is not None]

    def record(self, jid: str) -> tuple[JobRecord, str | None] | None:
        """The record of job ``jid`` (in flight: with its target) or None."""
        o = self._origins.get(jid)
        if o is not None and o.record is not None:
            return o.record, o.target
        r = self.finished.get(jid)
        return None if r is None else (r, None)

    def _finish(self, o: Origin, state: str, *, err: JobError | None = None,
                result: Frame | None = None, node: str | None = None) -> None:
        """``o`` was answered: its record joins the finished ones."""
        r = o.record
        if r is not None:
            r.finish(state, self._ctx.wall(), error=None if err is None else error_map(err),
                     result=result, node=node)
            self.finished.add(r)

    # ------------------------------------------------------------ submission
    def submit(self, cls: int, rid: bytes, h: Header, frames: list[Frame], body: Frame,
               now: float, grant: Grant = OPERATOR) -> None:
        """A client's JOB (frames: routing id, tag, header, body), from a key
        that may do what ``grant`` says (core/access.py)."""
        ctx = self._ctx
        ctx.counters["jobs_received"] += 1
        jid = h.id
        if jid in self._origins or jid in self._local:
            ctx.send_error(cls, rid, jid, h.src, cls,
                           BadRequest(f"job id '{jid}' is already in use", job_id=jid,
                                      details={"duplicate": True}))
            return
        limits = ctx.limits
        use = self._use.get(rid)
        size = len(body)
        if use is None:
            use = [0, 0]
        key = None if grant.operator else grant.fingerprint
        key_use = [0, 0] if key is None else self._key_use.get(key, [0, 0])
        max_jobs, max_bytes = limits.max_client_jobs, limits.max_client_bytes
        if (use[0] >= max_jobs or use[1] + size > max_bytes
                or key_use[0] >= max_jobs or key_use[1] + size > max_bytes):
            who, u = (("this connection", use)
                      if use[0] >= max_jobs or use[1] + size > max_bytes
                      else ("this client key", key_use))
            ctx.send_error(cls, rid, jid, h.src, cls, Overloaded(
                f"{who} has {u[0]} jobs ({u[1]} body bytes) in flight; the limits"
                f" are {max_jobs} jobs and {max_bytes}"
                f" bytes (this job: {size}): read the answers, then retry",
                job_id=jid, node=ctx.node_id))
            return
        try:
            req = JobRequest.unpack(body, envelope=True)
        except ProtocolError as exc:
            ctx.send_error(cls, rid, jid, h.src, cls, BadRequest(str(exc), job_id=jid))
            return
        refusal = grant.tool_refusal(req.tool) or (
            grant.node_refusal(req.on) if req.on is not None else None)
        if refusal is not None:
            ctx.send_error(cls, rid, jid, h.src, cls, Refused(refusal, job_id=jid))
            return
        o = Origin(jid, rid, cls, h.src, req, body, h.ts, now, req.retries, grant=grant,
                   record=JobRecord(jid, req.tool, h.src or None, ctx.wall(),
                                    CLASS_NAMES[cls], req.timeout,
                                    owner=grant.fingerprint))
        self._origins[jid] = o
        use[0] += 1
        use[1] += size
        self._use[rid] = use
        if key is not None:
            key_use[0] += 1
            key_use[1] += size
            self._key_use[key] = key_use
        self._place(o, now, frames[1:])

    def _forget(self, o: Origin) -> None:
        """Drop ``o`` (answered) and give its client's budget back."""
        del self._origins[o.id]
        use = self._use.get(o.client)
        if use is not None:
            use[0] -= 1
            use[1] -= len(o.body)
            if use[0] <= 0:
                del self._use[o.client]
        if not o.grant.operator:
            key_use = self._key_use.get(o.grant.fingerprint)
            if key_use is not None:
                key_use[0] -= 1
                key_use[1] -= len(o.body)
                if key_use[0] <= 0:
                    del self._key_use[o.grant.fingerprint]

    # ------------------------------------------------------------- placement
    def _offered_elsewhere(self, tool: str, caps: tuple[str, ...]) -> bool:
        """Whether another node offers ``tool`` to a job needing ``caps``
        (legacy SSH hosts only to jobs that require "ssh")."""
        self._remote_infos()
        return tool in self._remote_tools or ("ssh" in caps and tool in self._ssh_tools)

    def _remote_infos(self) -> list[NodeInfo]:
        """What every other reachable node advertises (cached per LSDB version)."""
        lsdb = self._lsdb
        if self._remote_cache_version != lsdb.version:
            self._remote_cache_version = lsdb.version
            node_id = self._ctx.node_id
            routes = self._routes
            health = self._health
            infos = []
            for lsa in lsdb.lsas():
                if lsa.origin == node_id or not lsa.tools:
                    continue
                r = routes.route(lsa.origin)
                infos.append(NodeInfo(lsa.origin, frozenset(lsa.tools),
                                      frozenset(lsa.capabilities), lsa.load, lsa.workers,
                                      r.cost if r is not None else 0.0,
                                      health(r.next_hop) if r is not None else 0.0,
                                      reachable=r is not None))
            self._remote_nodes = infos
            self._remote_tools = frozenset(
                t for n in infos if "ssh" not in n.caps for t in n.tools)
            self._ssh_tools = frozenset(t for n in infos if "ssh" in n.caps for t in n.tools)
        return self._remote_nodes

    def decide(self, tool: str, caps: tuple[str, ...] = (), *, prefer_local: bool = False,
               exclude: tuple[str, ...] = ()) -> RouteDecision:
        """Where a job for ``tool`` needing ``caps`` would run now, and why."""
        remote = [n for n in self._remote_infos() if tool in n.tools
                  and ("ssh" not in n.caps or "ssh" in caps)]
        local = self._local.info()
        return self.router.route(tool, caps, [local, *remote], prefer_local=prefer_local,
                                 exclude=exclude, in_flight=self._in_flight)

    def _place(self, o: Origin, now: float, frames: list[Frame] | None = None) -> None:
        """Start the next attempt of ``o``: here, or on the node it names, or on
        the best node that offers its tool and capabilities."""
        ctx = self._ctx
        node_id = ctx.node_id
        o.attempts += 1
        o.retry_at = None
        req = o.req
        body = o.body
        if o.attempts > 1:
            # One deadline for all attempts: a retry gets what is left of it.
            left = self._time_left(o, now)
            if left <= 0:
                ctx.counters["jobs_timed_out"] += 1
                self._failed(o, JobTimeout(
                    f"job '{o.id}' ({req.tool}) did not finish within"
                    f" {self._timeout(o):g} s ({o.attempts - 1} attempts)", job_id=o.id,
                    node=node_id), now, maybe_started=False, final=True)
                return
            req = dataclasses.replace(req, timeout=round(left, 3))
            body = o.attempt_body = req.pack()
            frames = None
        target = req.on
        if target is None:
            # Fast path: nobody else offers the tool; run here.  (Legacy SSH
            # hosts take only jobs that name them or require "ssh".)
            if not self._offered_elsewhere(req.tool, req.caps):
                target = node_id
                o.placement = "only this node offers it"
            else:
                exclude = tuple(o.tried)
                if o.grant.nodes:  # only where the client key may run jobs
                    exclude += tuple(n.node for n in self._remote_infos()
                                     if n.node not in o.grant.nodes)
                    if node_id not in o.grant.nodes:
                        exclude += (node_id,)
                d = self.decide(req.tool, req.caps, prefer_local=req.prefer_local,
                                exclude=exclude)
                if d.node is None:
                    err: JobError
                    if d.reason.startswith("the nodes offering"):
                        # Offered, by nodes we cannot reach now: transient.
                        err = NoRoute(d.reason, job_id=o.id, node=node_id,
                                      details={"transient": "unreachable"})
                        self._failed(o, err, now, maybe_started=False)
                    elif self._wait_for_workers(o, now):
                        return
                    else:
                        err = ToolNotFound(d.reason, job_id=o.id, node=node_id)
                        self._failed(o, err, now, maybe_started=False, final=True)
                    return
                target, o.placement = d.node, d.reason
        refusal = o.grant.node_refusal(target)
        if refusal is not None:
            self._failed(o, Refused(refusal, job_id=o.id, node=node_id), now,
                         maybe_started=False, final=True)
            return
        o.target = target
        o.incarnation = self._incarnation_of(target) if target != node_id else 0
        if o.record is not None:
            o.record.attempt(target, ctx.wall())
        self._in_flight[target] = self._in_flight.get(target, 0) + 1
        if target in self._legacy:
            if req.args_skipped:  # a legacy host needs the arguments themselves
                try:
                    req = o.req = JobRequest.unpack(o.body)
                except ProtocolError as exc:
                    self._failed(o, BadRequest(str(exc), job_id=o.id), now,
                                 maybe_started=False, final=True)
                    return
            err3 = self._legacy.accept(target, o.client, o.cls, o.src, o.id, req, now,
                                       remote=False, origin=True)
            if err3 is not None:
                self._failed(o, err3, now, maybe_started=False)
            return
        if target == node_id:
            job_frames: list[Frame] = frames if frames is not None else [
                TAG, encode_header((_JOB, o.id, o.src, node_id, DEFAULT_TTL, o.ts,
                                    o.cls, None)), body]
            err2 = self._local.accept(o.client, o.cls, o.src, o.id, req, job_frames, now,
                                      remote=False, origin=True)
            if err2 is not None:
                if isinstance(err2, ToolNotFound) and self._wait_for_workers(o, now):
                    return
                self._failed(o, err2, now, maybe_started=False)
            return
        counters = ctx.counters
        counters["forwarded"] += 1
        route = self._routes.route(target)
        if route is None:
            known = self._lsdb.knows(target)
            self._failed(o, NoRoute(
                f"no route from '{node_id}' to node '{target}'"
                + (" (it is known but unreachable)" if known else " (unknown node)"),
                job_id=o.id, node=node_id), now, maybe_started=False)
            return
        o.path = route.path
        self._send_attempt(o, now)

    def _send_attempt(self, o: Origin, now: float, *, resend: bool = False) -> None:
        """Send the JOB of ``o``'s current remote attempt toward ``o.target``,
        with a fresh deadline; a send that cannot go out fails the attempt
        (one that may have started already when ``resend``)."""
        ctx = self._ctx
        node_id = ctx.node_id
        counters = ctx.counters
        target = o.target
        assert target is not None
        # One deadline for the job: this attempt gets what is left of it.
        timeout = min(self._timeout(o), max(0.001, self._time_left(o, now)))
        body = o.attempt_body if o.attempt_body is not None else o.body
        o.deadline = now + timeout + ctx.limits.remote_grace
        heapq.heappush(self._deadlines, (o.deadline, o.id))
        # Stamped now (each attempt is a new signed message; replay window).
        refused = counters["qos_refused"]
        if not self._relay.originate((_JOB, o.id, node_id, target, DEFAULT_TTL,
                                      int(ctx.wall() * 1000), o.cls, None), [body],
                                     client=(o.grant.fingerprint, o.grant.role)):
            failure: JobError
            if counters["qos_refused"] != refused:
                failure = Overloaded(
                    f"the {CLASS_NAMES[o.cls]} queue toward '{target}' is full"
                    f" ({outbound_module.MAX_LINK_QUEUE} messages waiting for bandwidth)",
                    job_id=o.id, node=node_id)
            else:
                failure = NoRoute(f"no route from '{node_id}' to node '{target}'",
                                  job_id=o.id, node=node_id)
            self._failed(o, failure, now, maybe_started=resend)

    def _in_grace(self, now: float) -> bool:
        """Whether this node's own workers are still (re)connecting after start."""
        limits = self._ctx.limits
        return (limits.expected_workers > 0 and now < self._started + limits.worker_grace
                and self._local.info().workers < limits.expected_workers)

    def _wait_for_workers(self, o: Origin, now: float) -> bool:
        """Park ``o`` until a worker registers, during the start-up grace."""
        if not self._in_grace(now) or len(self.waiting) >= MAX_WAITING_FOR_WORKERS:
            return False
        self._release(o)
        o.attempts -= 1  # this one did not happen
        if o.id not in self.waiting:
            self.waiting.append(o.id)
            self._ctx.counters["jobs_waited_for_workers"] += 1
        return True

    def release_waiting(self, now: float) -> None:
        """Place the jobs that wait for workers again (a worker spoke, or the
        grace is over)."""
        ids, self.waiting = self.waiting, []
        for jid in ids:
            o = self._origins.get(jid)
            if o is not None:
                self._place(o, now)

    def _timeout(self, o: Origin) -> float:
        t = o.req.timeout
        return t if t is not None else self._ctx.limits.default_timeout

    def _time_left(self, o: Origin, now: float) -> float:
        """Seconds left of ``o``'s one deadline (its timeout from submission)."""
        return o.submitted + self._timeout(o) - now

    def _release(self, o: Origin) -> None:
        o.path = ()
        t = o.target
        if t is not None:
            n = self._in_flight.get(t, 0) - 1
            if n > 0:
                self._in_flight[t] = n
            else:
                self._in_flight.pop(t, None)
            o.target = None

    # --------------------------------------------------------------- outcomes
    def _failed(self, o: Origin, err: JobError, now: float, *, maybe_started: bool,
                final: bool = False) -> None:
        """An attempt of ``o`` failed with ``err``: try again elsewhere, or answer.

        The one place an attempt's outcome is classified."""
        ctx = self._ctx
        target = o.target
        self._release(o)
        if target is not None:
            o.tried.append(target)
        if o.id not in self._origins:
            return
        if (not final and is_transient(err) and o.retries_left > 0
                and self._time_left(o, now) > 0):
            if maybe_started and not o.req.idempotent:
                err = NotIdempotent(
                    f"job '{o.id}' ({o.req.tool}) may have started on node '{target}', which"
                    f" then failed ({err.code}: {err.message}); it is not idempotent, so it"
                    " was not run again", job_id=o.id, node=target,
                    details={"cause": err.code, "attempts": o.attempts})
            else:
                o.retries_left -= 1
                ctx.counters["retries"] += 1
                if o.record is not None:
                    o.record.attempt_ended(ctx.wall(), error_map(err))
                o.retry_at = now + self.retry_delay(o)
                heapq.heappush(self._retries, (o.retry_at, o.id))
                return
        elif maybe_started and not o.req.idempotent and err.code in RETRYABLE and o.req.retries:
            err = NotIdempotent(
                f"job '{o.id}' ({o.req.tool}) may have started on node '{target}', which then"
                f" failed ({err.code}: {err.message}); it is not idempotent, so it was not run"
                " again", job_id=o.id, node=target, details={"cause": err.code})
        self._forget(o)
        ctx.counters["jobs_failed"] += 1
        self._finish(o, "cancelled" if err.code == "cancelled" else "failed", err=err)
        if o.attempts > 1:
            err.details.setdefault("attempts", o.attempts)
        ctx.send_error(o.cls, o.client, o.id, o.src, o.cls, err)

    def retry_delay(self, o: Origin) -> float:
        """Seconds before the next attempt of ``o`` (docs/protocol.md §18.4)."""
        delay: float = min(RETRY_MAX, RETRY_BASE * 2.0 ** (o.attempts - 1))
        if o.req.on is not None or not self._untried_candidate(o):
            limits = self._ctx.limits
            delay = max(delay, limits.peer_liveness * limits.peer_interval)
        return delay

    def _untried_candidate(self, o: Origin) -> bool:
        """Whether a reachable node not tried yet can take ``o``."""
        d = self.decide(o.req.tool, o.req.caps, exclude=tuple(o.tried))
        return d.node is not None and d.node not in o.tried

    def attempt_failed(self, jid: str, err: JobError) -> None:
        """The attempt of ``jid`` that ran on this node (or a legacy host of
        ours) ended with ``err``."""
        o = self._origins.get(jid)
        if o is not None:
            self._failed(o, err, self._ctx.now, maybe_started=err.code in MAYBE_STARTED)

    def reply(self, jid: str, t: int, frames: list[Frame], now: float,
              from_node: str) -> None:
        """RESULT / ERROR / PROGRESS (frames: tag, header, body) for an origin job."""
        ctx = self._ctx
        o = self._origins.get(jid)
        if o is None:
            ctx.counters["late_replies"] += 1
            return
        if (from_node != ctx.node_id and from_node != o.target and from_node not in o.tried
                and from_node not in self._legacy):
            # Only a node an attempt was sent to answers for it (src is signed).
            ctx.counters["late_replies"] += 1
            return
        if t == _PROGRESS:
            ctx.out.append((o.cls, [o.client, *frames]))
            return
        if t == _RESULT:
            if o.target != from_node and o.target is not None and from_node != ctx.node_id:
                # A result of an earlier attempt: still the job's result.
                self._cancel_attempt(o)
            self._release(o)
            self._forget(o)
            ctx.counters["jobs_completed"] += 1
            self._finish(o, "done", result=frames[2], node=from_node)
            if o.attempts > 1:
                frames = [frames[0], frames[1], _with_attempts(frames[2], o.attempts)]
            ctx.out.append((o.cls, [o.client, *frames]))
            return
        try:
            e = ErrorBody.unpack(frames[2])
        except ProtocolError:
            e = ErrorBody("protocol", "unreadable error from the executing node")
        if from_node != o.target and e.code != "no_route":
            return  # an error from an attempt we already gave up on (a relay that
            # cannot reach the target says no_route: that one counts)
        ctx.count_error(e.code)
        err = error_from_wire(e.code, e.message, job_id=jid, remote_type=e.type, node=e.node,
                              details=e.details)
        if e.code == "tool_not_found" and from_node != ctx.node_id:
            # Its LSA offered the tool: its workers changed (or have not
            # registered again yet); another attempt may find one.
            err.details.setdefault("transient", "offer changed")
        self._failed(o, err, now, maybe_started=e.code in MAYBE_STARTED)

    def _cancel_attempt(self, o: Origin) -> None:
        """Stop the current attempt of ``o`` wherever it runs."""
        ctx = self._ctx
        t = o.target
        if t is None:
            return
        if t == ctx.node_id or t in self._legacy:
            self._local.supersede(o.id)
        else:
            self._relay.originate((_CANCEL, o.id, ctx.node_id, t, DEFAULT_TTL,
                                   int(ctx.wall() * 1000), o.cls, None),
                                  [Cancel("cancelled by its origin").pack()])

    def cancel(self, jid: str, reason: str = "", *, client: bytes | None = None,
               owner: str | None = None) -> bool:
        """Cancel origin job ``jid`` (of ``client``, or submitted with the key
        of fingerprint ``owner``, when given) wherever it runs; its submitter
        gets JobCancelled.  False when there is no such job."""
        ctx = self._ctx
        o = self._origins.get(jid)
        if o is None or (client is not None and o.client != client) or (
                owner is not None and o.grant.fingerprint != owner):
            return False  # finished already (its reply is on the way) or not ours
        ctx.counters["jobs_cancelled"] += 1
        self._cancel_attempt(o)
        self._release(o)
        self._forget(o)
        err = JobCancelled(f"job '{jid}' was cancelled" + (f": {reason}" if reason else ""),
                           job_id=jid)
        self._finish(o, "cancelled", err=err)
        ctx.send_error(o.cls, o.client, jid, o.src, o.cls, err)
        return True

    def topology_changed(self, reachable: set[str] | frozenset[str], now: float,
                         up: Callable[[str], bool] | None = None) -> None:
        """Routes changed: attempts on nodes now unreachable have failed;
        attempts whose path lost a node (or whose first hop ``up`` says is no
        longer a link) are re-sent on the new path."""
        ctx = self._ctx
        node_id = ctx.node_id
        self._remote_cache_version = -1  # route costs changed
        for o in list(self._origins.values()):
            t = o.target
            if t is None or t == node_id or t in self._legacy:
                continue
            if t not in reachable:
                self._failed(o, NoRoute(
                    f"node '{t}' became unreachable while running job '{o.id}'",
                    job_id=o.id, node=node_id), now, maybe_started=True)
                continue
            path = o.path
            if not path or o.retry_at is not None:
                continue
            edge = self._routes.graph.edge
            broken = (any(n not in reachable for n in path[1:-1])
                      or any(edge(u, v) is None for u, v in pairwise(path))
                      or (up is not None and len(path) > 1 and not up(path[1])))
            if not broken:
                continue
            route = self._routes.route(t)
            if route is None or route.path == path:
                continue
            lost = [n for n in path[1:-1] if n not in reachable]
            ctx.counters["attempts_resent"] += 1
            ctx.events.append(("job:rerouted", {
                "job": o.id, "target": t, "old_path": list(path),
                "path": list(route.path), "lost": lost}))
            o.path = route.path
            self._send_attempt(o, now, resend=True)

    def node_restarted(self, node: str, incarnation: int, now: float) -> None:
        """``node`` runs as a new ``incarnation``: attempts sent to an earlier
        one are gone with it; they failed now (may have started), not at
        their deadline."""
        for o in list(self._origins.values()):
            if o.target == node and o.incarnation and o.incarnation != incarnation:
                self._ctx.counters["attempts_restarted"] += 1
                self._failed(o, WorkerLost(
                    f"node '{node}' restarted while running job '{o.id}' (a new"
                    " incarnation)", job_id=o.id, node=node,
                    details={"cause": "restarted"}), now, maybe_started=True)

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        """Deadlines of remote attempts, and retries that are due."""
        ctx = self._ctx
        odl = self._deadlines
        while odl and odl[0][0] <= now:
            deadline, jid = heapq.heappop(odl)
            o = self._origins.get(jid)
            if o is None or o.deadline != deadline or o.target in (None, ctx.node_id):
                continue
            ctx.counters["jobs_timed_out"] += 1
            target = o.target
            self._cancel_attempt(o)
            self._failed(o, JobTimeout(
                f"job '{jid}' on node '{target}' got no answer within"
                f" {deadline - now + (now - o.submitted):g} s", job_id=jid, node=target),
                now, maybe_started=True)
        if len(odl) > 2 * len(self._origins) + 1024:
            self._deadlines = [(o.deadline, o.id) for o in self._origins.values()
                               if o.deadline]
            heapq.heapify(self._deadlines)
        if self.waiting and not self._in_grace(now):
            self.release_waiting(now)
        rq = self._retries
        while rq and rq[0][0] <= now:
            at, jid = heapq.heappop(rq)
            o = self._origins.get(jid)
            if o is not None and o.retry_at == at:
                self._place(o, now)

    def next_deadline(self, t: float) -> float:
        """The earlier of ``t`` and the next attempt deadline or retry."""
        if self._deadlines and self._deadlines[0][0] < t:
            t = self._deadlines[0][0]
        if self._retries and self._retries[0][0] < t:
            t = self._retries[0][0]
        if self.waiting:
            t = min(t, self._started + self._ctx.limits.worker_grace)
        return t

    def shutdown(self, reason: str) -> None:
        """Stop every attempt and answer every job with NoRoute."""
        ctx = self._ctx
        for o in list(self._origins.values()):
            if o.target not in (None, ctx.node_id):
                self._cancel_attempt(o)  # stop it where it runs
            self._failed(o, NoRoute(f"job '{o.id}' was stopped: {reason}", job_id=o.id,
                                    node=ctx.node_id), ctx.now,
                         maybe_started=False, final=True)


def _with_attempts(body: Frame, attempts: int) -> Frame:
    """A RESULT body saying how many attempts the job took (re-encoded only
    when a job was retried)."""
    try:
        r = ResultBody.unpack(body)
    except ProtocolError:
        return body
    return ResultBody(r.value, r.node, r.duration, attempts).pack()
