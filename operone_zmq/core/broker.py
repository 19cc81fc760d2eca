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
from collections import OrderedDict, deque
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
    NotIdempotent,
    Overloaded,
    ProtocolError,
    ToolNotFound,
    WorkerLost,
    error_from_wire,
)
from ..jobs.router import NodeInfo, RouteDecision, ToolRouter
from ..protocol.bodies import (
    MAX_LSAS_PER_MESSAGE,
    Bye,
    Cancel,
    Disconnect,
    ErrorBody,
    Heartbeat,
    Hello,
    JobRequest,
    Ping,
    Query,
    Ready,
    ResultBody,
    Welcome,
    pack_lsas,
    pack_value,
    unpack_lsas,
    unpack_value,
)
from ..protocol.codec import TAG, Header, MsgType, decode, decode_header, encode_header
from ..protocol.limits import DEFAULT_TTL, MAX_HEADER_SIZE
from ..qos.manager import QoSManager
from ..routing.dijkstra import RoutingTable
from ..routing.lsa import LSA, LinkInfo
from ..routing.lsdb import LinkStateDB, initial_seq
from ..routing.topology import NetworkTopology
from .peers import (
    DOWN,
    HELLO_SENT,
    MAX_HELLO_BACKOFF,
    MIN_HELLO_BACKOFF,
    REFUSED_BACKOFF,
    UP,
    PeerLink,
)

__all__ = [
    "CLASS_NAMES",
    "FIRST_DIAL_SOCKET",
    "WORKERS",
    "Authorizer",
    "BrokerCore",
    "BrokerLimits",
    "WorkerSession",
]

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

_HELLO = int(MsgType.HELLO)
_WELCOME = int(MsgType.WELCOME)
_PONG = int(MsgType.PONG)
_LSA = int(MsgType.LSA)
_BYE = int(MsgType.BYE)
_BROADCAST = int(MsgType.BROADCAST)
_REPLY = int(MsgType.REPLY)
#: Message types routed hop by hop by their header's dst.
_ROUTED = frozenset({_JOB, _RESULT, _ERROR, _PROGRESS, _CANCEL})

#: Seconds between a topology change and our reaction to it (events, failing
#: jobs to nodes that became unreachable): batches a burst of LSAs.
SPF_DELAY = 0.05

#: A split of the link-state graph must last this long (s) to be reported as a
#: partition: links coming up are briefly one-sided.
PARTITION_HOLD = 1.0

#: Change of our load (busy fraction of worker slots) that is worth a new LSA.
LOAD_CHANGE = 0.2

#: At most one LSA of ours per this many seconds (OSPF's MinLSInterval): a
#: burst of link changes is advertised once.
LSA_MIN_INTERVAL = 0.05

#: QoS message type whose policy shapes each class on peer links: heartbeats
#: and handshakes are critical (never throttled), jobs and results high, other
#: traffic normal, and the low class is bulk data ("file-transfer", 5 MB/s
#: by default).
QOS_CLASS_TYPES = ("heartbeat", "tool-call", "message", "file-transfer")

#: Messages waiting per (link, class) for tokens; past it, sends are refused
#: (the origin hears Overloaded) instead of buffering without end.
MAX_LINK_QUEUE = 10_000

#: Dialled DEALER sockets get indices from here on (the shell allocates them).
FIRST_DIAL_SOCKET = 5

_QUEUED = 0
_RUNNING = 1

#: (claimed node id, Curve key z85 from ZAP User-Id, token) -> refusal reason or None.
Authorizer = Callable[[str, "str | None", "str | None"], "str | None"]


def _refuse_all(node: str, key: str | None, token: str | None) -> str | None:
    return "this broker accepts no peer links (no authorizer configured)"


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
    #: Seconds between PINGs on each peer link (and the unit of peer liveness).
    peer_interval: float = 1.0
    #: Peer heartbeat intervals of silence after which a link is down.
    peer_liveness: int = 3
    #: Peer links this broker accepts (the original's maxPeers).
    max_peers: int = 64
    #: Broadcast ids remembered to deliver each broadcast once (bounded LRU).
    max_seen_broadcasts: int = 10_000
    #: Received broadcasts kept for QUERY "broadcasts".
    max_kept_broadcasts: int = 1000
    #: Extra seconds a forwarded job waits past its timeout for the remote answer.
    remote_grace: float = 1.0
    #: Seconds a finished remote job's result is kept to answer a repeated attempt.
    result_cache_seconds: float = 300.0


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
    remote: bool = False  # submitted by another node (src), not a local client
    origin: bool = False  # submitted through this broker's origin table
    legacy: str | None = None  # runs on this legacy (SSH) host, not on a worker
    request: JobRequest | None = None  # a legacy job's request (no worker frames)


#: What a legacy (SSH-only) host offers the mesh.
LEGACY_TOOLS = ("shell", "fs.read", "fs.write")


@dataclass(slots=True)
class _Legacy:
    """A legacy host this broker runs jobs on over SSH."""

    name: str
    slots: int
    running: set[str] = field(default_factory=set)
    queue: deque[str] = field(default_factory=deque)
    done: int = 0


@dataclass(slots=True)
class _Origin:
    """A local client's job, from submission to its one answer: where it was
    placed, how many attempts it had, and what is left of its retries."""

    id: str
    client: bytes
    cls: int
    src: str
    req: JobRequest
    body: bytes
    ts: int
    submitted: float
    retries_left: int
    attempts: int = 0
    target: str | None = None
    tried: list[str] = field(default_factory=list)
    deadline: float = 0.0  # of the current remote attempt
    retry_at: float | None = None
    placement: str = ""


#: Error codes after which another attempt may succeed elsewhere.
RETRYABLE = frozenset({"worker_lost", "no_route", "overloaded", "timeout", "unreachable"})
#: Error codes after which the job may have started (matters when it is not
#: idempotent: it is then not run again).
MAYBE_STARTED = frozenset({"worker_lost", "timeout", "unreachable"})
#: Backoff before attempt n+1: RETRY_BASE * 2**(n-1), at most RETRY_MAX (s).
RETRY_BASE = 0.05
RETRY_MAX = 2.0
#: Finished results kept per origin job id, so a repeated attempt is answered
#: from here instead of running the tool twice.
MAX_CACHED_RESULTS = 10_000


class BrokerCore:
    """Everything a broker decides, with no sockets and no clock of its own."""

    def __init__(
        self,
        node_id: str,
        *,
        limits: BrokerLimits | None = None,
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
        name: str = "",
        cluster: str = "operone",
        public_key: str = "",
        authorize: Authorizer | None = None,
        token_factory: Callable[[], str | None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.name = name or node_id
        self.cluster = cluster
        self.public_key = public_key
        self.limits = limits or BrokerLimits()
        self._wall = wall
        self._authorize = authorize or _refuse_all
        #: Mints a fresh token for each HELLO (tokens expire; links outlive them).
        self._token_factory = token_factory
        # ---- mesh state
        #: Events for the shell to emit: (name, payload).
        self.events: list[tuple[str, Any]] = []
        #: Things only the shell can do (open sockets): ("dial", node, host, port).
        self.actions: list[tuple[Any, ...]] = []
        self.links: dict[str, PeerLink] = {}
        self._link_by_sock: dict[int, PeerLink] = {}
        self.lsdb = LinkStateDB(node_id, initial_seq(wall()))
        self.routes = RoutingTable(self.lsdb)
        #: The original's NetworkTopology API, as a view of our link-state database.
        self.topology = NetworkTopology(node_id, clock=lambda: self._now, lsdb=self.lsdb)
        self._lsa_dirty = True
        self._topo_seen = -1
        self._topo_due: float | None = None
        self._next_originate = now
        self._partitions = 1
        self._origins: dict[str, _Origin] = {}
        self._origin_deadlines: list[tuple[float, str]] = []
        self._retries: list[tuple[float, str]] = []
        self._in_flight: dict[str, int] = {}
        self._results: OrderedDict[tuple[str, str], tuple[float, list[bytes]]] = OrderedDict()
        self.router = ToolRouter()
        self._remote_cache_version = -1
        self._remote_nodes: list[NodeInfo] = []
        self._local_tools: frozenset[str] = frozenset()
        self.legacy: dict[str, _Legacy] = {}
        self.qos = QoSManager(clock=lambda: self._now)
        self.qos.on("violation:latency", lambda d: self.events.append(
            ("qos:violation", {"kind": "latency", **d})))
        self.qos.on("violation:packet-loss", lambda d: self.events.append(
            ("qos:violation", {"kind": "packet-loss", **d})))
        self._release_at = float("inf")
        self._advertised_load = 0.0
        self._partition_due: float | None = None
        self._local_caps: frozenset[str] = frozenset()
        self._now = now
        self._seen_bc: dict[tuple[str, str], None] = {}
        self.broadcasts: deque[dict[str, Any]] = deque(maxlen=self.limits.max_kept_broadcasts)
        self._next_ping = now + self.limits.peer_interval
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
            "forwarded": 0,
            "relayed": 0,
            "no_route": 0,
            "ttl_expired": 0,
            "peers_refused": 0,
            "peer_key_mismatch": 0,
            "lsas_received": 0,
            "lsas_sent": 0,
            "broadcasts_received": 0,
            "retries": 0,
            "results_from_cache": 0,
            "qos_refused": 0,
            "qos_dropped_link_down": 0,
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
    def on_frontend(self, cls: int, frames: list[bytes], now: float,
                    uid: str | None = None) -> None:
        """Handle one message arriving on the frontend ROUTER of class ``cls``.

        Routing ids chosen by ZeroMQ (clients) start with a zero byte; any
        other routing id is a claimed node id (a peer), verified against the
        Curve key ``uid`` that ZAP authenticated.
        """
        self._now = now
        rid = frames[0]
        if rid[:1] != b"\x00":
            self._on_peer_router(cls, rid, uid, frames, now)
            return
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
        elif t == _BROADCAST:
            self._on_client_broadcast(cls, rid, h, msg.body, now)
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
        self._now = now
        jid = h.id
        if jid in self._origins or jid in self._jobs:
            self._send_error(cls, rid, jid, h.src, cls,
                             BadRequest(f"job id '{jid}' is already in use", job_id=jid,
                                        details={"duplicate": True}))
            return
        try:
            req = JobRequest.unpack(body)
        except ProtocolError as exc:
            self._send_error(cls, rid, jid, h.src, cls, BadRequest(str(exc), job_id=jid))
            return
        o = _Origin(jid, rid, cls, h.src, req, body, h.ts, now, req.retries)
        self._origins[jid] = o
        self._place(o, now, frames[1:])

    # ------------------------------------------------------- origin jobs
    def _local_info(self) -> NodeInfo:
        running = 0
        slots = 0
        for w in self.workers.values():
            running += len(w.running)
            slots += w.slots
        return NodeInfo(self.node_id, self._local_tools, self._local_caps,
                        running / slots if slots else 0.0, len(self.workers), 0.0, 100.0,
                        local=True)

    def _remote_infos(self) -> list[NodeInfo]:
        """What every other reachable node advertises (cached per LSDB version)."""
        if self._remote_cache_version != self.lsdb.version:
            self._remote_cache_version = self.lsdb.version
            infos = []
            for lsa in self.lsdb.lsas():
                if lsa.origin == self.node_id or not lsa.tools:
                    continue
                if lsa.kind == "ssh" and lsa.origin in self.legacy:
                    pass  # ours: reachable at cost 0 through us
                r = self.routes.route(lsa.origin)
                infos.append(NodeInfo(lsa.origin, frozenset(lsa.tools),
                                      frozenset(lsa.capabilities), lsa.load, lsa.workers,
                                      r.cost if r is not None else 0.0,
                                      self._health(r.next_hop) if r is not None else 0.0,
                                      reachable=r is not None))
            self._remote_nodes = infos
        return self._remote_nodes

    def _health(self, neighbour: str) -> float:
        """0-100: the QoS health score of the first hop (latency, loss, jitter)."""
        if self.qos.get_metrics(neighbour) is None:
            return 100.0
        return float(self.qos.get_health_score(neighbour))

    def decide(self, tool: str, caps: tuple[str, ...] = (), *, prefer_local: bool = False,
               exclude: tuple[str, ...] = ()) -> RouteDecision:
        """Where a job for ``tool`` needing ``caps`` would run now, and why."""
        remote = [n for n in self._remote_infos() if tool in n.tools
                  and ("ssh" not in n.caps or "ssh" in caps)]
        local = self._local_info()
        return self.router.route(tool, caps, [local, *remote], prefer_local=prefer_local,
                                 exclude=exclude, in_flight=self._in_flight)

    def _place(self, o: _Origin, now: float, frames: list[bytes] | None = None) -> None:
        """Start the next attempt of ``o``: here, or on the node it names, or on
        the best node that offers its tool and capabilities."""
        o.attempts += 1
        o.retry_at = None
        req = o.req
        target = req.on
        if target is None:
            # Fast path: nobody else offers the tool; run here.  (Legacy SSH
            # hosts take only jobs that name them or require "ssh".)
            if not any(req.tool in n.tools and ("ssh" not in n.caps or "ssh" in req.caps)
                       for n in self._remote_infos()):
                target = self.node_id
                o.placement = "only this node offers it"
            else:
                d = self.decide(req.tool, req.caps, prefer_local=req.prefer_local,
                                exclude=tuple(o.tried))
                if d.node is None:
                    err: JobError = ToolNotFound(d.reason, job_id=o.id, node=self.node_id)
                    self._origin_failed(o, err, now, maybe_started=False, final=True)
                    return
                target, o.placement = d.node, d.reason
        o.target = target
        self._in_flight[target] = self._in_flight.get(target, 0) + 1
        if target in self.legacy:
            err3 = self._accept_legacy(target, o.client, o.cls, o.src, o.id, req, now,
                                       remote=False, origin=True)
            if err3 is not None:
                self._origin_failed(o, err3, now, maybe_started=False)
            return
        if target == self.node_id:
            job_frames = frames if frames is not None else [
                TAG, encode_header(Header(_JOB, o.id, o.src, self.node_id, DEFAULT_TTL, o.ts,
                                          o.cls, None)), o.body]
            err2 = self._accept_local(o.client, o.cls, o.src, o.id, req, job_frames, now,
                                      remote=False, origin=True)
            if err2 is not None:
                self._origin_failed(o, err2, now, maybe_started=False)
            return
        self.counters["forwarded"] += 1
        if self.routes.next_hop(target) is None:
            known = target in self.lsdb
            self._origin_failed(o, NoRoute(
                f"no route from '{self.node_id}' to node '{target}'"
                + (" (it is known but unreachable)" if known else " (unknown node)"),
                job_id=o.id, node=self.node_id), now, maybe_started=False)
            return
        timeout = req.timeout if req.timeout is not None else self.limits.default_timeout
        o.deadline = now + timeout + self.limits.remote_grace
        heapq.heappush(self._origin_deadlines, (o.deadline, o.id))
        header = encode_header(Header(_JOB, o.id, self.node_id, target, DEFAULT_TTL, o.ts,
                                      o.cls, None))
        refused = self.counters["qos_refused"]
        if not self._send_to_node(target, o.cls, [TAG, header, o.body], _JOB):
            failure: JobError
            if self.counters["qos_refused"] != refused:
                failure = Overloaded(f"the {CLASS_NAMES[o.cls]} queue toward '{target}' is full"
                                 f" ({MAX_LINK_QUEUE} messages waiting for bandwidth)",
                                 job_id=o.id, node=self.node_id)
            else:
                failure = NoRoute(f"no route from '{self.node_id}' to node '{target}'",
                                  job_id=o.id, node=self.node_id)
            self._origin_failed(o, failure, now, maybe_started=False)

    def _release(self, o: _Origin) -> None:
        t = o.target
        if t is not None:
            n = self._in_flight.get(t, 0) - 1
            if n > 0:
                self._in_flight[t] = n
            else:
                self._in_flight.pop(t, None)
            o.target = None

    def _origin_failed(self, o: _Origin, err: JobError, now: float, *, maybe_started: bool,
                       final: bool = False) -> None:
        """An attempt of ``o`` failed with ``err``: try again elsewhere, or answer."""
        target = o.target
        self._release(o)
        if target is not None:
            o.tried.append(target)
        if o.id not in self._origins:
            return
        if not final and err.code in RETRYABLE and o.retries_left > 0:
            if maybe_started and not o.req.idempotent:
                err = NotIdempotent(
                    f"job '{o.id}' ({o.req.tool}) may have started on node '{target}', which"
                    f" then failed ({err.code}: {err.message}); it is not idempotent, so it"
                    " was not run again", job_id=o.id, node=target,
                    details={"cause": err.code, "attempts": o.attempts})
            else:
                o.retries_left -= 1
                self.counters["retries"] += 1
                o.retry_at = now + min(RETRY_MAX, RETRY_BASE * 2 ** (o.attempts - 1))
                heapq.heappush(self._retries, (o.retry_at, o.id))
                return
        elif maybe_started and not o.req.idempotent and err.code in RETRYABLE and o.req.retries:
            err = NotIdempotent(
                f"job '{o.id}' ({o.req.tool}) may have started on node '{target}', which then"
                f" failed ({err.code}: {err.message}); it is not idempotent, so it was not run"
                " again", job_id=o.id, node=target, details={"cause": err.code})
        del self._origins[o.id]
        self.counters["jobs_failed"] += 1
        if o.attempts > 1:
            err.details.setdefault("attempts", o.attempts)
        self._send_error(o.cls, o.client, o.id, o.src, o.cls, err)

    def _origin_reply(self, jid: str, t: int, frames: list[bytes], now: float,
                      from_node: str) -> None:
        """RESULT / ERROR / PROGRESS (frames: tag, header, body) for an origin job."""
        o = self._origins.get(jid)
        if o is None:
            self.counters["late_replies"] += 1
            return
        if t == _PROGRESS:
            self.out.append((o.cls, [o.client, *frames]))
            return
        if t == _RESULT:
            if o.target != from_node and o.target is not None and from_node != self.node_id:
                # A result of an earlier attempt: still the job's result.
                self._cancel_attempt(o)
            self._release(o)
            del self._origins[jid]
            self.counters["jobs_completed"] += 1
            if o.attempts > 1:
                frames = [frames[0], frames[1], _with_attempts(frames[2], o.attempts)]
            self.out.append((o.cls, [o.client, *frames]))
            return
        try:
            e = ErrorBody.unpack(frames[2])
        except ProtocolError:
            e = ErrorBody("protocol", "unreadable error from the executing node")
        if from_node != o.target and e.code != "no_route":
            return  # an error from an attempt we already gave up on (a relay that
            # cannot reach the target says no_route: that one counts)
        self._count_error_code(e.code)
        err = error_from_wire(e.code, e.message, job_id=jid, remote_type=e.type, node=e.node,
                              details=e.details)
        self._origin_failed(o, err, now, maybe_started=e.code in MAYBE_STARTED)

    def _cancel_attempt(self, o: _Origin) -> None:
        """Stop the current attempt of ``o`` wherever it runs."""
        t = o.target
        if t is None:
            return
        if t == self.node_id or t in self.legacy:
            job = self._jobs.get(o.id)
            if job is not None and job.origin:
                job.origin = False  # its answer must not reach the origin table
                job.client = b""
                self._abort(job, JobCancelled("superseded", job_id=o.id), silent=True)
        else:
            self._send_to_node(t, o.cls, [
                TAG, encode_header(Header(_CANCEL, o.id, self.node_id, t, DEFAULT_TTL,
                                          int(self._wall() * 1000), o.cls, None)),
                Cancel("cancelled by its origin").pack()], _CANCEL)

    def _accept_local(
        self, client: bytes, cls: int, src: str, jid: str, req: JobRequest,
        job_frames: list[bytes], now: float, *, remote: bool, origin: bool = False,
    ) -> JobError | None:
        """Take a job to run on this node; the error to answer when refused."""
        caps = frozenset(req.caps)
        candidates = self._by_tool.get(req.tool)
        if not candidates:
            return ToolNotFound(
                f"no worker on node '{self.node_id}' offers tool '{req.tool}'", job_id=jid,
                node=self.node_id)
        if caps and not any(caps <= w.caps for w in candidates):
            return ToolNotFound(
                f"no worker on node '{self.node_id}' offers tool '{req.tool}' with capabilities"
                f" {sorted(caps)}", job_id=jid, node=self.node_id)
        if len(self._jobs) >= self.limits.max_jobs:
            return Overloaded(
                f"node '{self.node_id}' has {len(self._jobs)} jobs in progress (limit"
                f" {self.limits.max_jobs})", job_id=jid, node=self.node_id)
        timeout = req.timeout if req.timeout is not None else self.limits.default_timeout
        job = _Job(jid, client, cls, req.tool, caps, job_frames, now + timeout, now, src,
                   remote=remote, origin=origin)
        worker = self._pick(candidates, caps)
        if worker is None:
            if self._queued >= self.limits.max_queued_jobs:
                return Overloaded(
                    f"node '{self.node_id}' has {self._queued} jobs queued (limit"
                    f" {self.limits.max_queued_jobs}); retry later", job_id=jid,
                    node=self.node_id)
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
        return None

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

    def _fail(self, job: _Job, err: JobError, silent: bool = False) -> None:
        """End ``job`` with ``err`` sent to its submitter."""
        self._jobs.pop(job.id, None)
        if job.legacy is not None:
            self._legacy_freed(job)
        if silent:
            return
        if job.origin:
            o = self._origins.get(job.id)
            if o is not None:
                self._origin_failed(o, err, self._now, maybe_started=err.code in MAYBE_STARTED)
            return
        self.counters["jobs_failed"] += 1
        if job.remote:
            self.errors[err.code] = self.errors.get(err.code, 0) + 1
            self._route_error(job.src, job.id, job.cls, err, job.legacy)
        else:
            self._send_error(job.cls, job.client, job.id, job.src, job.cls, err)

    def _reply(self, job: _Job, frames: list[bytes], h: Header) -> None:
        """Send a worker's RESULT/ERROR/PROGRESS for ``job`` to its submitter."""
        if job.origin:
            self._origin_reply(job.id, h.type, frames[1:], self._now,
                               job.legacy or self.node_id)
            return
        if not job.remote:
            self.out.append((job.cls, [job.client, *frames[1:]]))
            return
        if h.type == _RESULT:
            self._cache_result(job.src, job.id, frames)
        header = encode_header(Header(h.type, h.id, job.legacy or self.node_id, job.src,
                                      DEFAULT_TTL, h.ts, job.cls, h.corr))
        self._send_to_node(job.src, job.cls, [TAG, header, *frames[3:]], h.type)

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
        if q.what == "peers":
            return [link.describe(now) for link in self.links.values()]
        if q.what == "topology":
            return self.topology_graph()
        if q.what == "route":
            dest = q.args.get("dest")
            if not isinstance(dest, str):
                return {"error": "route needs args.dest"}
            return self.route_info(dest)
        if q.what == "network":
            return self.network_stats()
        if q.what == "broadcasts":
            return list(self.broadcasts)
        if q.what == "qos":
            peer = q.args.get("peer")
            if not isinstance(peer, str):
                return {"error": "qos needs args.peer"}
            alloc = q.args.get("allocate")
            if isinstance(alloc, int | float) and not isinstance(alloc, bool):
                self.allocate_bandwidth(peer, float(alloc) if alloc > 0 else None)
            return self.qos_metrics(peer) or {"peer": peer, "error": "no such peer link"}
        if q.what == "cancel":
            jid = q.args.get("job")
            if not isinstance(jid, str):
                return {"error": "cancel needs args.job"}
            reason = q.args.get("reason")
            return {"job": jid, "cancelled": self.cancel_job(
                jid, reason if isinstance(reason, str) else "", now=now)}
        if q.what == "placement":
            tool, caps = q.args.get("tool"), q.args.get("caps", [])
            if not isinstance(tool, str) or not isinstance(caps, list):
                return {"error": "placement needs args.tool (and args.caps, a list)"}
            d = self.decide(tool, tuple(str(c) for c in caps),
                            prefer_local=bool(q.args.get("prefer_local")))
            return {"node": d.node, "reason": d.reason, "local": d.local, "score": d.score,
                    "candidates": list(d.candidates)}
        if q.what == "connect":
            node, host, port = q.args.get("node"), q.args.get("host"), q.args.get("port")
            if not (isinstance(node, str) and isinstance(host, str) and isinstance(port, int)):
                return {"error": "connect needs args node (str), host (str), port (int)"}
            self.actions.append(("dial", node, host, port))
            return {"node": node, "status": "dialling"}
        return None

    def _on_cancel(self, cls: int, rid: bytes, h: Header, body: bytes, now: float) -> None:
        try:
            reason = Cancel.unpack(body).reason
        except ProtocolError:
            reason = ""
        self.cancel_job(h.id, reason, client=rid, now=now)

    def cancel_job(self, jid: str, reason: str = "", *, client: bytes | None = None,
                   now: float | None = None) -> bool:
        """Cancel origin job ``jid`` (of ``client``, when given) wherever it
        runs; its submitter gets JobCancelled.  False when there is no such job."""
        if now is not None:
            self._now = now
        o = self._origins.get(jid)
        if o is None or (client is not None and o.client != client):
            return False  # finished already (its reply is on the way) or not ours
        self.counters["jobs_cancelled"] += 1
        self._cancel_attempt(o)
        self._release(o)
        del self._origins[jid]
        self._send_error(o.cls, o.client, jid, o.src, o.cls, JobCancelled(
            f"job '{jid}' was cancelled" + (f": {reason}" if reason else ""), job_id=jid))
        return True

    def _abort(self, job: _Job, err: JobError, silent: bool = False) -> None:
        """Stop ``job`` wherever it is and answer its submitter with ``err``
        (``silent``: answer nobody)."""
        if job.state == _QUEUED:
            q = self._queues.get((job.tool, job.caps))
            if q is not None:
                try:
                    q.remove(job.id)
                    self._queued -= 1
                except ValueError:
                    pass
        elif job.legacy is not None:
            self.actions.append(("ssh-cancel", job.legacy, job.id))
        elif job.worker is not None and job.worker in self.workers:
            # The slot stays taken until the worker answers the CANCEL.
            self.out.append((WORKERS, [job.worker, TAG,
                                       self._header(_CANCEL, job.id, "", job.cls),
                                       Cancel(err.code).pack()]))
        self._fail(job, err, silent)

    # ------------------------------------------------------------- workers
    def on_worker(self, frames: list[bytes], now: float) -> None:
        """Handle one message from a local worker."""
        self._now = now
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
                if not job.origin:
                    self.counters["jobs_completed" if t == _RESULT else "jobs_failed"] += 1
                    if t == _ERROR:
                        self._count_error(msg.body)
                self._reply(job, frames, h)
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
                self._reply(job, frames, h)
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
        self._count_error_code(code)

    def _count_error_code(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def _cache_result(self, src: str, jid: str, frames: list[bytes]) -> None:
        """Keep a remote origin's result, to answer a repeated attempt."""
        cache = self._results
        cache[(src, jid)] = (self._now + self.limits.result_cache_seconds, frames)
        while len(cache) > MAX_CACHED_RESULTS:
            cache.popitem(last=False)

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
        self._lsa_dirty = True
        self._local_changed()
        # Tell the worker who we are (src) and that it is registered.
        self.out.append((WORKERS, [rid, TAG, self._header(_HEARTBEAT, self._next_id(), "", 0),
                                   Heartbeat(0).pack()]))
        if self._queued:
            self._fill(w)

    def _local_changed(self) -> None:
        self._local_tools = frozenset(self._by_tool)
        caps: set[str] = set()
        for w in self.workers.values():
            caps |= w.caps
        self._local_caps = frozenset(caps)

    def _remove_worker(self, w: WorkerSession, reason: str) -> None:
        self.workers.pop(w.rid, None)
        self._lsa_dirty = True
        for tool in w.tools:
            lst = self._by_tool.get(tool)
            if lst is not None:
                try:
                    lst.remove(w)
                except ValueError:
                    pass
                if not lst:
                    del self._by_tool[tool]
        self._local_changed()
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
                    # Never started: the origin may place it elsewhere.
                    self._fail(job, NoRoute(
                        f"no worker on node '{self.node_id}' offers tool '{key[0]}' any more",
                        job_id=jid, node=self.node_id))

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
        self._now = now
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


    # =========================================================== peer mesh
    # ---------------------------------------------------------- link setup
    def add_dialled_link(self, node: str, socks: list[int], now: float, *, address: str = "",
                         token: str | None = None) -> PeerLink:
        """We dialled ``node`` with one DEALER per class (socket indices
        ``socks``); start the handshake."""
        link = self.links.get(node)
        if link is None:
            link = self.links[node] = PeerLink(node)
        if link.dial is not None:
            for i in link.dial:
                self._link_by_sock.pop(i, None)
        link.dial = list(socks)
        link.dial_state = DOWN
        link.address = address
        link.token = token
        link.next_hello = now
        link.backoff = MIN_HELLO_BACKOFF
        for i in socks:
            self._link_by_sock[i] = link
        self._send_hello(link, now)
        return link

    def remove_link(self, node: str, now: float) -> list[int]:
        """Forget the link to ``node``; returns the dialled sockets to close."""
        link = self.links.get(node)
        if link is None:
            return []
        if link.up:
            self._link_send(link, 0, [TAG, self._header(_BYE, self._next_id(), node, 0),
                                      Bye("link removed", "closed").pack()])
        socks = link.dial or []
        for i in socks:
            self._link_by_sock.pop(i, None)
        was_up = link.up
        del self.links[node]
        if was_up:
            self._on_link_down(link, now, "link removed")
        return socks

    def transport_lost(self, node: str, now: float) -> None:
        """The shell saw our dialled connection to ``node`` drop."""
        link = self.links.get(node)
        if link is not None and link.dial is not None and link.dial_state != DOWN:
            was_up = link.up
            link.dial_state = DOWN
            link.next_hello = now + MIN_HELLO_BACKOFF
            if was_up and not link.up:
                self._on_link_down(link, now, "connection lost")

    def _send_hello(self, link: PeerLink, now: float) -> None:
        if link.dial is None:
            return
        token = link.token
        if token is None and self._token_factory is not None:
            token = self._token_factory()
        body = Hello(self.node_id, self.name, self.cluster, token).pack()
        self.out.append((link.dial[0], [TAG, self._header(_HELLO, self._next_id(), link.node, 0),
                                        body]))
        if link.dial_state == DOWN:
            link.dial_state = HELLO_SENT
        link.next_hello = now + link.backoff
        link.backoff = min(MAX_HELLO_BACKOFF, link.backoff * 2)

    def _link_send(self, link: PeerLink, cls: int, frames: list[bytes]) -> bool:
        """Send on the link's preferred transport, shaped by QoS; False when it
        has no transport up or its queue for the class is full."""
        if not link.up:
            return False
        q = link.queues.get(cls)
        size = 0
        for f in frames:
            size += len(f)
        if q:  # others of this class wait already: keep the order
            if len(q) >= MAX_LINK_QUEUE:
                self.counters["qos_refused"] += 1
                return False
            q.append(frames)
            return True
        if not self.qos.consume(link.node, QOS_CLASS_TYPES[cls], size, self._now):
            # Over the link's allocation or the class's policy rate: wait.
            link.queues.setdefault(cls, deque()).append(frames)
            self.qos.set_queue_depth(link.node, sum(len(x) for x in link.queues.values()))
            self._release_at = min(self._release_at, self._now + self.qos.time_until(
                link.node, QOS_CLASS_TYPES[cls], size, self._now))
            return True
        self._put_on_wire(link, cls, frames)
        return True

    def _put_on_wire(self, link: PeerLink, cls: int, frames: list[bytes]) -> None:
        if link.dial is not None and link.dial_state == UP:
            self.out.append((link.dial[cls], frames))
        elif link.rid is not None:
            self.out.append((cls, [link.rid, *frames]))
        link.sent += 1

    def _release_queued(self, now: float) -> None:
        """Send what the token buckets allow now from the links' class queues."""
        self._release_at = float("inf")
        for link in self.links.values():
            if not link.queues:
                continue
            if not link.up:
                dropped = sum(len(q) for q in link.queues.values())
                self.counters["qos_dropped_link_down"] += dropped
                link.queues.clear()
                continue
            for cls in sorted(link.queues):  # critical first
                q = link.queues[cls]
                mtype = QOS_CLASS_TYPES[cls]
                while q:
                    size = sum(len(f) for f in q[0])
                    if not self.qos.consume(link.node, mtype, size, now):
                        self._release_at = min(self._release_at, now + max(
                            0.001, self.qos.time_until(link.node, mtype, size, now)))
                        break
                    self._put_on_wire(link, cls, q.popleft())
                if not q:
                    del link.queues[cls]
            self.qos.set_queue_depth(link.node, sum(len(x) for x in link.queues.values()))

    def allocate_bandwidth(self, peer: str, mb_per_s: float | None) -> None:
        """Limit what this broker sends to neighbour ``peer`` (MB/s; None: no limit)."""
        self.qos.allocate_bandwidth(peer, mb_per_s)

    def qos_metrics(self, peer: str) -> dict[str, Any] | None:
        """The QoS metrics of the link to ``peer`` (the original's getQoSMetrics)."""
        m = self.qos.get_metrics(peer)
        if m is None:
            return None
        link = self.links.get(peer)
        return {
            "peer": peer, "latency_ms": round(m.latency, 3), "jitter_ms": round(m.jitter, 3),
            "packet_loss": round(m.packet_loss, 4), "bandwidth_mb_s": round(m.bandwidth, 3),
            "queue_depth": m.queue_depth, "health_score": m.health_score,
            "allocation_mb_s": self.qos.get_allocation(peer),
            "queued_by_class": {CLASS_NAMES[c]: len(q) for c, q in link.queues.items()}
            if link is not None else {},
        }

    def _on_link_up(self, link: PeerLink, now: float) -> None:
        link.up_since = now
        link.heard = now
        link.backoff = MIN_HELLO_BACKOFF
        link.last_error = ""
        self._lsa_dirty = True
        self.events.append(("peer:connected", {"node": link.node, "name": link.name or link.node,
                                               "address": link.address}))
        # Database exchange: the new neighbour gets everything we know.
        self._send_lsas(link, [lsa.to_wire() for lsa in self.lsdb.lsas()])

    def _on_link_down(self, link: PeerLink, now: float, reason: str) -> None:
        link.last_error = reason
        link.pings.clear()
        self._lsa_dirty = True
        self.events.append(("peer:disconnected", {"node": link.node, "reason": reason}))

    # --------------------------------------------------- incoming from peers
    def _on_peer_router(self, cls: int, rid: bytes, uid: str | None, frames: list[bytes],
                        now: float) -> None:
        try:
            msg = decode(frames, 1)
        except ProtocolError:
            self.counters["malformed"] += 1
            return  # unverified or broken peer: counted, not answered
        try:
            node = rid.decode()
        except UnicodeDecodeError:
            self.counters["malformed"] += 1
            return
        h = msg.header
        if h.type == _HELLO:
            self._on_hello(cls, rid, node, uid, h, msg.body, now)
            return
        link = self.links.get(node)
        if link is None or link.rid != rid or not link.accepted_up:
            # Not a peer we accepted (or it restarted): ask it to say HELLO.
            self.counters["peers_refused"] += 1
            self.out.append((cls, [rid, TAG, self._header(_BYE, self._next_id(), node, cls),
                                   Bye("no session: send HELLO", "no_session").pack()]))
            return
        if uid != link.key:
            # Someone else took over this routing id: refuse, keep the link.
            self.counters["peer_key_mismatch"] += 1
            self.events.append(("security:peer_key_mismatch", {"node": node}))
            return
        self._on_peer_msg(link, cls, msg, frames[1:], now)

    def on_dealer(self, sock: int, frames: list[bytes], now: float) -> None:
        """Handle a message from a neighbour on a DEALER we dialled."""
        self._now = now
        link = self._link_by_sock.get(sock)
        if link is None:
            return
        try:
            msg = decode(frames)
        except ProtocolError:
            self.counters["malformed"] += 1
            return
        h = msg.header
        t = h.type
        if t == _WELCOME:
            try:
                w = Welcome.unpack(msg.body)
            except ProtocolError as exc:
                link.last_error = f"bad WELCOME: {exc}"
                return
            if w.node != link.node or w.cluster != self.cluster:
                link.last_error = (f"dialled '{link.node}' of cluster '{self.cluster}' but"
                                   f" '{w.node}' of cluster '{w.cluster}' answered")
                link.dial_state = DOWN
                return
            was_up = link.up
            link.dial_state = UP
            link.name = w.name
            if not was_up:
                self._on_link_up(link, now)
            link.heard = now
            return
        if t == _BYE:
            try:
                bye = Bye.unpack(msg.body)
            except ProtocolError:
                bye = Bye("(unreadable reason)")
            if bye.code == "no_session" and link.dial_state == UP:
                # The neighbour restarted and forgot us: handshake again.
                link.dial_state = DOWN
                self._send_hello(link, now)
                return
            was_up = link.up
            link.dial_state = DOWN
            link.last_error = f"{bye.code}: {bye.reason}"
            link.next_hello = now + max(link.backoff,
                                        REFUSED_BACKOFF if bye.code == "refused" else 0.0)
            if bye.code == "refused":
                self.events.append(("peer:refused", {"node": link.node, "reason": bye.reason}))
            if was_up and not link.up:
                self._on_link_down(link, now, link.last_error)
            return
        if link.dial_state != UP:
            return  # nothing but WELCOME/BYE before the handshake is done
        self._on_peer_msg(link, link.dial.index(sock) if link.dial else 0, msg, frames, now)

    def _on_hello(self, cls: int, rid: bytes, node: str, uid: str | None, h: Header,
                  body: bytes, now: float) -> None:
        def refuse(reason: str) -> None:
            self.counters["peers_refused"] += 1
            self.events.append(("peer:refused", {"node": node, "reason": reason}))
            self.out.append((cls, [rid, TAG, self._header(_BYE, self._next_id(), node, cls),
                                   Bye(reason, "refused").pack()]))

        try:
            hello = Hello.unpack(body)
        except ProtocolError as exc:
            refuse(f"bad HELLO: {exc}")
            return
        if hello.node != node:
            refuse(f"HELLO claims to be '{hello.node}' on a connection whose routing id is"
                   f" '{node}'")
            return
        if node == self.node_id:
            refuse(f"'{node}' is this broker's own node id")
            return
        if hello.cluster != self.cluster:
            refuse(f"cluster '{hello.cluster}' is not this broker's cluster '{self.cluster}'")
            return
        reason = self._authorize(node, uid, hello.token)
        if reason is not None:
            refuse(reason)
            return
        link = self.links.get(node)
        up_now = sum(1 for lk in self.links.values() if lk.up)
        if (link is None or not link.up) and up_now >= self.limits.max_peers:
            refuse(f"this broker already has {up_now} peers (max_peers"
                   f" {self.limits.max_peers})")
            return
        if link is None:
            link = self.links[node] = PeerLink(node)
        was_up = link.up
        link.rid = rid
        link.key = uid
        link.accepted_up = True
        link.name = hello.name
        self.out.append((cls, [rid, TAG, self._header(_WELCOME, h.id, node, cls, h.id),
                               Welcome(self.node_id, self.name, self.cluster).pack()]))
        if not was_up:
            self._on_link_up(link, now)
        else:
            # Re-HELLO from a live neighbour (it restarted): give it our database again.
            self._send_lsas(link, [lsa.to_wire() for lsa in self.lsdb.lsas()])
        link.heard = now

    def _on_peer_msg(self, link: PeerLink, cls: int, msg: Any, frames: list[bytes],
                     now: float) -> None:
        """A message from an established neighbour (frames: tag, header, body...)."""
        link.heard = now
        link.received += 1
        h: Header = msg.header
        t = h.type
        if t in _ROUTED:
            self._on_routed(link, h, frames, now)
        elif t == _PING:
            self._link_send(link, 0, [TAG, self._header(_PONG, h.id, link.node, 0, h.id),
                                      msg.body])
        elif t == _PONG:
            try:
                seq = Ping.unpack(msg.body).seq
            except ProtocolError:
                return
            sent = link.pings.pop(seq, None)
            self.qos.pong_received(link.node, seq, now)
            if sent is not None:
                link.pongs += 1
                link.record_rtt((now - sent) * 1000.0)
                cost = link.cost
                old = link.advertised_cost
                if abs(cost - old) > max(1.0, 0.5 * old):
                    self._lsa_dirty = True
        elif t == _LSA:
            self._on_lsa(link, msg.body, now)
        elif t == _BROADCAST:
            self._on_broadcast(link.node, h, frames, now)
        elif t == _BYE:
            try:
                bye = Bye.unpack(msg.body)
            except ProtocolError:
                bye = Bye("(unreadable reason)")
            was_up = link.up
            link.accepted_up = False
            if link.dial is not None:
                link.dial_state = DOWN
                link.next_hello = now + MIN_HELLO_BACKOFF
            if was_up and not link.up:
                self._on_link_down(link, now, f"{bye.code}: {bye.reason}")
        elif t == _WELCOME:
            return
        else:
            self.counters["malformed"] += 1

    # ------------------------------------------------------------- routing
    def _send_to_node(self, dst: str, cls: int, frames: list[bytes], t: int) -> bool:
        """Send routed frames toward ``dst`` by its next hop; False if unreachable."""
        nh = self.routes.next_hop(dst)
        link = self.links.get(nh) if nh is not None else None
        if link is None or not self._link_send(link, cls, frames):
            self.counters["no_route"] += 1
            return False
        return True

    def _route_error(self, dst: str, mid: str, cls: int, err: JobError,
                     src: str | None = None) -> None:
        """Send ERROR toward ``dst``; ``src`` is the node answering (a legacy
        host we serve answers in its own name)."""
        body = ErrorBody(err.code, err.message, err.remote_type, err.node or self.node_id,
                         err.details).pack()
        header = encode_header(Header(_ERROR, mid, src or self.node_id, dst, DEFAULT_TTL,
                                      int(self._wall() * 1000), cls, None))
        self._send_to_node(dst, cls, [TAG, header, body], _ERROR)

    def _on_routed(self, link: PeerLink, h: Header, frames: list[bytes], now: float) -> None:
        """A JOB/RESULT/ERROR/PROGRESS/CANCEL from a neighbour: ours, or relay it."""
        if h.dst == self.node_id:
            self._deliver_routed(h, frames, now)
            return
        if h.dst in self.legacy:
            self._deliver_legacy(h, frames, now)
            return
        if h.ttl <= 1:
            self.counters["ttl_expired"] += 1
            if h.type == _JOB and h.src:
                self._route_error(h.src, h.id, h.cls, NoRoute(
                    f"message for '{h.dst}' ran out of hops (TTL) at '{self.node_id}'",
                    job_id=h.id, node=self.node_id))
            return
        header = encode_header(h._replace(ttl=h.ttl - 1))
        if self._send_to_node(h.dst, h.cls, [TAG, header, *frames[2:]], h.type):
            self.counters["relayed"] += 1
            return
        # Only a JOB is answered: an ERROR for a lost CANCEL would read as the
        # failure of the job's current attempt.
        if h.type == _JOB and h.src:
            self._route_error(h.src, h.id, h.cls, NoRoute(
                f"no route from '{self.node_id}' to node '{h.dst}'", job_id=h.id,
                node=self.node_id))

    def _deliver_routed(self, h: Header, frames: list[bytes], now: float) -> None:
        t = h.type
        self._now = now
        if t == _JOB:
            self.counters["jobs_received"] += 1
            jid = h.id
            cached = self._results.get((h.src, jid))
            if cached is not None and cached[0] > now:
                # A repeated attempt of a job we finished: answer, do not run again.
                self.counters["results_from_cache"] += 1
                stub = _Job(jid, b"", h.cls, "", frozenset(), [], 0.0, now, h.src, remote=True)
                self._reply(stub, cached[1], decode_header(cached[1][2]))
                return
            running = self._jobs.get(jid)
            if running is not None:
                if running.remote and running.src == h.src:
                    return  # the same attempt again: its answer is on the way
                self._route_error(h.src, jid, h.cls, BadRequest(
                    f"job id '{jid}' is already in use on '{self.node_id}'", job_id=jid))
                return
            try:
                req = JobRequest.unpack(frames[2])
            except ProtocolError as exc:
                self._route_error(h.src, jid, h.cls, BadRequest(str(exc), job_id=jid))
                return
            err = self._accept_local(b"", h.cls, h.src, jid, req, frames, now, remote=True)
            if err is not None:
                self.errors[err.code] = self.errors.get(err.code, 0) + 1
                self._route_error(h.src, jid, h.cls, err)
            return
        if t == _CANCEL:
            victim = self._jobs.get(h.id)
            if victim is not None and victim.remote and victim.src == h.src:
                self.counters["jobs_cancelled"] += 1
                self._abort(victim, JobCancelled(
                    f"job '{victim.id}' was cancelled by its origin", job_id=victim.id))
            return
        # RESULT / ERROR / PROGRESS of a job this broker placed for a local client
        self._origin_reply(h.id, t, frames, now, h.src)

    # ------------------------------------------------------------ broadcast
    def _on_client_broadcast(self, cls: int, rid: bytes, h: Header, body: bytes,
                             now: float) -> None:
        bh = Header(_BROADCAST, h.id, self.node_id, "", DEFAULT_TTL, h.ts, cls, None)
        reached = self._on_broadcast(None, bh, [TAG, encode_header(bh), body], now)
        self.out.append((cls, [rid, TAG, self._header(_REPLY, h.id, h.src, cls, h.id),
                               pack_value({"id": h.id, "neighbours": reached})]))

    def _on_broadcast(self, from_node: str | None, h: Header, frames: list[bytes],
                      now: float) -> int:
        """Deliver a broadcast here once and flood it on; returns links sent to."""
        key = (h.src, h.id)
        if key in self._seen_bc:
            return 0
        self._seen_bc[key] = None
        while len(self._seen_bc) > self.limits.max_seen_broadcasts:
            del self._seen_bc[next(iter(self._seen_bc))]
        self.counters["broadcasts_received"] += 1
        try:
            data = unpack_value(frames[2])
        except ProtocolError:
            data = None
        record = {"id": h.id, "src": h.src, "via": from_node, "data": data}
        self.broadcasts.append(record)
        self.events.append(("message", record))
        if h.ttl <= 1:
            return 0
        header = encode_header(h._replace(ttl=h.ttl - 1))
        sent = 0
        for link in self.links.values():
            if (link.node != from_node and link.up and link.node != h.src
                    and self._link_send(link, h.cls, [TAG, header, *frames[2:]])):
                sent += 1
        return sent

    # ----------------------------------------------------------- link state
    def _our_links(self) -> list[LinkInfo]:
        out = [LinkInfo(name, 1.0) for name in self.legacy]
        for link in self.links.values():
            if link.up:
                link.advertised_cost = link.cost
                out.append(LinkInfo(link.node, round(link.cost, 3)))
        return out

    def _originate(self, now: float) -> None:
        self._lsa_dirty = False
        running = sum(len(w.running) for w in self.workers.values())
        slots = sum(w.slots for w in self.workers.values())
        caps: set[str] = set()
        for w in self.workers.values():
            caps |= w.caps
        load = round(running / slots, 3) if slots else 0.0
        self._advertised_load = load
        lsa = self.lsdb.originate(
            self._our_links(), sorted(self._by_tool), sorted(caps), load, len(self.workers),
            now, public_key=self.public_key, name=self.name)
        wire = [lsa.to_wire()]
        for lg in self.legacy.values():
            llsa = self.lsdb.originate(
                [LinkInfo(self.node_id, 1.0)], LEGACY_TOOLS, ("ssh",),
                round(len(lg.running) / lg.slots, 3), lg.slots, now, origin=lg.name,
                kind="ssh", name=f"{lg.name} (ssh via {self.node_id})")
            wire.append(llsa.to_wire())
        self._flood(wire, None)

    def _flood(self, wire: list[dict[str, Any]], except_node: str | None) -> None:
        for link in self.links.values():
            if link.up and link.node != except_node:
                self._send_lsas(link, wire)

    def _send_lsas(self, link: PeerLink, wire: list[dict[str, Any]]) -> None:
        for i in range(0, len(wire), MAX_LSAS_PER_MESSAGE):
            chunk = wire[i:i + MAX_LSAS_PER_MESSAGE]
            if self._link_send(link, 0, [TAG, self._header(_LSA, self._next_id(), link.node, 0),
                                         pack_lsas(chunk)]):
                self.counters["lsas_sent"] += len(chunk)

    def _on_lsa(self, link: PeerLink, body: bytes, now: float) -> None:
        try:
            raw = unpack_lsas(body)
        except ProtocolError:
            self.counters["malformed"] += 1
            return
        self.counters["lsas_received"] += len(raw)
        lsas = []
        newer: list[dict[str, Any]] = []
        get = self.lsdb.get
        for x in raw:
            # Most flooded LSAs are copies we already hold: compare the seq
            # before paying for full validation.
            if type(x) is dict:
                cur = get(x.get("origin"))  # type: ignore[arg-type]
                seq = x.get("seq")
                if cur is not None and type(seq) is int and seq <= cur.seq:
                    if seq < cur.seq:
                        newer.append(cur.to_wire())  # the sender is behind
                    continue
            try:
                lsas.append(LSA.from_wire(x))
            except ProtocolError:
                self.counters["malformed"] += 1
        result = self.lsdb.install_many(lsas, now, link.node)
        if result.accepted:
            self._flood([x.to_wire() for x in result.accepted], link.node)
        newer += [cur.to_wire() for x in result.older
                  if (cur := self.lsdb.get(x.origin)) is not None]
        if newer:
            self._send_lsas(link, newer)
        if self.lsdb.needs_reorigination:
            self._lsa_dirty = True

    def poll(self, now: float) -> None:
        """Work that batches up: originate our LSA if it changed, react to
        topology changes.  The shell calls this after each batch of messages."""
        if self._lsa_dirty and now >= self._next_originate:
            self._next_originate = now + LSA_MIN_INTERVAL
            self._originate(now)
        if self._topo_seen != self.lsdb.topology_version:
            # Hold-down (as OSPF's SPF delay): a burst of LSAs during
            # convergence costs one reaction, not one per LSA.
            if self._topo_due is None:
                self._topo_due = now + SPF_DELAY
            if now >= self._topo_due:
                self._topo_due = None
                self._topo_seen = self.lsdb.topology_version
                self._on_topology_changed(now)

    def _on_topology_changed(self, now: float) -> None:
        reachable = self.routes.reachable()
        self.events.append(("topology:updated", {"nodes": len(reachable) + 1}))
        comps = len(self.routes.graph.components()) if len(self.lsdb) else 1
        if comps > 1 and self._partitions <= 1:
            # Only a split that lasts: while links come up, one side's LSA
            # can list a link before the other's does.
            if self._partition_due is None:
                self._partition_due = now + PARTITION_HOLD
        elif comps <= 1:
            self._partition_due = None
            if self._partitions > 1:
                self.events.append(("partition:healed", {"partitions": comps}))
            self._partitions = comps
        else:
            self._partitions = comps
        self._remote_cache_version = -1  # route costs changed
        for o in list(self._origins.values()):
            t = o.target
            if t is not None and t != self.node_id and t not in reachable:
                self._origin_failed(o, NoRoute(
                    f"node '{t}' became unreachable while running job '{o.id}'",
                    job_id=o.id, node=self.node_id), now, maybe_started=True)

    def _mesh_tick(self, now: float) -> None:
        silence = self.limits.peer_liveness * self.limits.peer_interval
        for link in list(self.links.values()):
            if link.up and now - link.heard >= silence:
                link.accepted_up = False
                if link.dial is not None:
                    link.dial_state = DOWN
                    link.next_hello = now
                self._on_link_down(link, now, f"no heartbeat for {silence:g} s")
                if link.dial is None:
                    del self.links[link.node]
        if now >= self._next_ping:
            self._next_ping = now + self.limits.peer_interval
            for link in list(self.links.values()):
                if not link.up:
                    continue
                link.ping_seq += 1
                link.pings[link.ping_seq] = now
                link.pings_sent += 1
                self.qos.ping_sent(link.node, link.ping_seq, now)
                if len(link.pings) > 64:
                    del link.pings[min(link.pings)]
                self._link_send(link, 0, [TAG, self._header(_PING, self._next_id(), link.node, 0),
                                          Ping(link.ping_seq).pack()])
        for link in self.links.values():
            if link.dial is not None and link.dial_state != UP and now >= link.next_hello:
                if link.dial_state == HELLO_SENT and link.accepted_up:
                    link.next_hello = now + MAX_HELLO_BACKOFF
                    continue
                self._send_hello(link, now)
        odl = self._origin_deadlines
        while odl and odl[0][0] <= now:
            deadline, jid = heapq.heappop(odl)
            o = self._origins.get(jid)
            if o is None or o.deadline != deadline or o.target in (None, self.node_id):
                continue
            self.counters["jobs_timed_out"] += 1
            target = o.target
            self._cancel_attempt(o)
            self._origin_failed(o, JobTimeout(
                f"job '{jid}' on node '{target}' got no answer within"
                f" {deadline - now + (now - o.submitted):g} s", job_id=jid, node=target),
                now, maybe_started=True)
        if len(odl) > 2 * len(self._origins) + 1024:
            self._origin_deadlines = [(o.deadline, o.id) for o in self._origins.values()
                                      if o.deadline]
            heapq.heapify(self._origin_deadlines)
        rq = self._retries
        while rq and rq[0][0] <= now:
            at, jid = heapq.heappop(rq)
            o = self._origins.get(jid)
            if o is not None and o.retry_at == at:
                self._place(o, now)
        if self._results:
            cache = self._results
            while cache:
                key, (exp, _) = next(iter(cache.items()))
                if exp > now:
                    break
                del cache[key]
        if self.lsdb.expire(now):
            pass  # topology_version moved: poll() reacts
        if self.lsdb.refresh_due(now):
            self._lsa_dirty = True
        self.qos.expire_pings(now, timeout=silence)
        # Load is advertised when it moved noticeably, at most once a heartbeat
        # interval (placement elsewhere weighs it; a stale burst must not stick).
        if now >= self._next_ping - self.limits.peer_interval / 2 and self.workers:
            slots = sum(w.slots for w in self.workers.values())
            load = sum(len(w.running) for w in self.workers.values()) / slots if slots else 0.0
            if abs(load - self._advertised_load) > LOAD_CHANGE:
                self._lsa_dirty = True
        if self._partition_due is not None and now >= self._partition_due:
            self._partition_due = None
            comps = len(self.routes.graph.components()) if len(self.lsdb) else 1
            if comps > 1 and self._partitions <= 1:
                self._partitions = comps
                self.events.append(("partition:detected", {"partitions": comps}))
        if self._release_at <= now:
            self._release_queued(now)

    # ------------------------------------------------------------- queries
    def route_info(self, dest: str) -> dict[str, Any]:
        """The route to ``dest`` as ``operone route`` shows it (NetworkTopology)."""
        if dest == self.node_id:
            return {"destination": dest, "reachable": True, "path": [dest], "hops": 0,
                    "next_hop": None, "total_latency": 0.0, "bandwidth": 0.0,
                    "reliability": 1.0}
        r = self.topology.find_route(dest)
        if r is None:
            return {"destination": dest, "reachable": False, "known": dest in self.lsdb}
        return {"destination": dest, "reachable": True, "path": list(r.path),
                "hops": r.hop_count, "next_hop": r.next_hop,
                "total_latency": round(r.total_latency, 3), "bandwidth": r.bandwidth,
                "reliability": round(r.reliability, 6)}

    def topology_graph(self) -> dict[str, Any]:
        """Nodes and edges of the link-state graph (NetworkTopology)."""
        return self.topology.get_topology_graph().to_dict()

    def network_stats(self) -> dict[str, Any]:
        """The original's getNetworkStats(), over the whole link-state graph."""
        ns = self.topology.get_network_stats()
        return {
            "total_nodes": ns.total_nodes - ns.unreachable_nodes,
            "known_nodes": ns.total_nodes,
            "unreachable_nodes": ns.unreachable_nodes,
            "direct_connections": ns.direct_connections,
            "indirect_connections": ns.indirect_connections,
            "average_hop_count": round(ns.average_hop_count, 3),
            "average_latency": round(ns.average_latency, 3),
            "network_diameter": ns.network_diameter,
            "diameter_exact": ns.diameter_exact,
            "partitions": ns.partitions,
        }

    # ------------------------------------------------------- legacy hosts
    def add_legacy_host(self, name: str, slots: int) -> None:
        """Run jobs for node ``name`` (an SSH-only host) from this broker; the
        mesh sees it as a node linked to us, offering LEGACY_TOOLS."""
        self.legacy[name] = _Legacy(name, slots)
        self._lsa_dirty = True

    def _accept_legacy(self, name: str, client: bytes, cls: int, src: str, jid: str,
                       req: JobRequest, now: float, *, remote: bool,
                       origin: bool = False) -> JobError | None:
        lg = self.legacy[name]
        if req.tool not in LEGACY_TOOLS:
            return ToolNotFound(f"legacy host '{name}' offers only {', '.join(LEGACY_TOOLS)},"
                                f" not '{req.tool}'", job_id=jid, node=name)
        if jid in self._jobs:
            return BadRequest(f"job id '{jid}' is already in use", job_id=jid)
        if len(lg.queue) >= self.limits.max_queued_jobs:
            return Overloaded(f"legacy host '{name}' has {len(lg.queue)} jobs queued",
                              job_id=jid, node=name)
        timeout = req.timeout if req.timeout is not None else self.limits.default_timeout
        job = _Job(jid, client, cls, req.tool, frozenset(), [], now + timeout, now,
                   src, remote=remote, origin=origin, legacy=name, request=req)
        self._jobs[jid] = job
        heapq.heappush(self._deadlines, (job.deadline, jid))
        if len(lg.running) < lg.slots:
            self._start_legacy(lg, job)
        else:
            lg.queue.append(jid)
        return None

    def _start_legacy(self, lg: _Legacy, job: _Job) -> None:
        job.state = _RUNNING
        lg.running.add(job.id)
        req = job.request
        if req is None:  # pragma: no cover - every legacy job carries its request
            return
        self.actions.append(("ssh", lg.name, job.id, req.tool, req.args,
                             max(0.0, job.deadline - self._now)))

    def _legacy_freed(self, job: _Job) -> None:
        lg = self.legacy.get(job.legacy or "")
        if lg is None:
            return
        lg.running.discard(job.id)
        while lg.queue and len(lg.running) < lg.slots:
            nxt = self._jobs.get(lg.queue.popleft())
            if nxt is not None and nxt.state == _QUEUED:
                self._start_legacy(lg, nxt)

    def _deliver_legacy(self, h: Header, frames: list[bytes], now: float) -> None:
        """A routed JOB or CANCEL for one of our legacy hosts."""
        if h.type == _CANCEL:
            victim = self._jobs.get(h.id)
            if victim is not None and victim.legacy == h.dst and victim.src == h.src:
                self._abort(victim, JobCancelled(f"job '{h.id}' was cancelled by its origin",
                                                 job_id=h.id))
            return
        if h.type != _JOB:
            return
        self.counters["jobs_received"] += 1
        try:
            req = JobRequest.unpack(frames[2])
        except ProtocolError as exc:
            self._route_error(h.src, h.id, h.cls, BadRequest(str(exc), job_id=h.id), h.dst)
            return
        err = self._accept_legacy(h.dst, b"", h.cls, h.src, h.id, req, now, remote=True)
        if err is not None:
            self._route_error(h.src, h.id, h.cls, err, h.dst)

    def legacy_done(self, jid: str, value: Any, error: JobError | None, duration: float,
                    now: float) -> None:
        """The shell finished running job ``jid`` on its legacy host."""
        self._now = now
        job = self._jobs.get(jid)
        if job is None or job.legacy is None:
            return  # timed out or cancelled meanwhile: answered already
        del self._jobs[jid]
        self._legacy_freed(job)
        lg = self.legacy.get(job.legacy)
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
                self.counters["jobs_failed"] += 1
        else:
            t = _RESULT
            if not job.origin:
                self.counters["jobs_completed"] += 1
        h = Header(t, jid, job.legacy, job.src, DEFAULT_TTL, int(self._wall() * 1000),
                   job.cls, None)
        self._reply(job, [b"", TAG, encode_header(h), body], h)

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        """Run timers: heartbeats, worker liveness and job deadlines."""
        self._now = now
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
        self._mesh_tick(now)
        self.poll(now)

    def next_deadline(self) -> float:
        """When :meth:`tick` must next run."""
        t = min(self._next_heartbeat, self._next_ping)
        if self._deadlines and self._deadlines[0][0] < t:
            t = self._deadlines[0][0]
        if self._origin_deadlines and self._origin_deadlines[0][0] < t:
            t = self._origin_deadlines[0][0]
        if self._retries and self._retries[0][0] < t:
            t = self._retries[0][0]
        silence = self.limits.peer_liveness * self.limits.peer_interval
        for link in self.links.values():
            if link.dial is not None and link.dial_state != UP and link.next_hello < t:
                t = link.next_hello
            if link.up and link.heard + silence < t:
                t = link.heard + silence
        if self._topo_due is not None and self._topo_due < t:
            t = self._topo_due
        if self._release_at < t:
            t = self._release_at
        if self._partition_due is not None and self._partition_due < t:
            t = self._partition_due
        if self._lsa_dirty and self._next_originate < t:
            t = self._next_originate
        lsdb_t = self.lsdb.next_deadline()
        if lsdb_t is not None and lsdb_t < t:
            t = lsdb_t
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
            "peers": sorted(n for n, link in self.links.items() if link.up),
            "known_nodes": len(self.lsdb),
            "origin_jobs_in_progress": len(self._origins),
            "link_queues": {n: {CLASS_NAMES[c]: len(q) for c, q in lk.queues.items()}
                            for n, lk in self.links.items() if lk.queues},
            "legacy_hosts": {lg.name: {"running": len(lg.running), "queued": len(lg.queue),
                                       "done": lg.done, "slots": lg.slots}
                             for lg in self.legacy.values()},
            "in_flight_by_node": dict(self._in_flight),
            **self.counters,
            "errors": dict(self.errors),
        }

    def shutdown(self, reason: str = "the broker is shutting down") -> None:
        """Answer every job in progress with an error and tell workers to go."""
        for job in list(self._jobs.values()):
            if job.state == _RUNNING:
                # It may have started: the origin must not re-run it unless idempotent.
                self._abort(job, WorkerLost(f"job '{job.id}' was stopped while running:"
                                            f" {reason}", job_id=job.id, node=self.node_id))
            else:
                self._abort(job, NoRoute(f"job '{job.id}' was stopped before it started:"
                                         f" {reason}", job_id=job.id, node=self.node_id))
        for o in list(self._origins.values()):
            if o.target not in (None, self.node_id):
                self._cancel_attempt(o)  # stop it where it runs
            self._origin_failed(o, NoRoute(f"job '{o.id}' was stopped: {reason}", job_id=o.id,
                                           node=self.node_id), self._now,
                                maybe_started=False, final=True)
        for link in list(self.links.values()):
            if link.up:
                self._link_send(link, 0, [TAG, self._header(_BYE, self._next_id(), link.node, 0),
                                          Bye(reason, "shutdown").pack()])
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


def _with_attempts(body: bytes, attempts: int) -> bytes:
    """A RESULT body saying how many attempts the job took (re-encoded only
    when a job was retried)."""
    try:
        r = ResultBody.unpack(body)
    except ProtocolError:
        return body
    return ResultBody(r.value, r.node, r.duration, attempts).pack()
