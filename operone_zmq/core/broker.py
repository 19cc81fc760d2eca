"""BrokerCore: the broker's logic with no I/O, one face over several parts.

Frames and ``now`` go in; frames to send come out in :attr:`BrokerCore.out`
as ``(socket, frames)`` pairs, where ``socket`` is one of the indices below.
The asyncio shell (:mod:`operone_zmq.aio.broker`) owns the sockets, feeds
every received message in, flushes ``out`` and calls :meth:`tick` at
:meth:`next_deadline`.

Sockets (indices into the shell's socket list)::

    0..3  CRITICAL, HIGH, NORMAL, LOW   frontend ROUTERs (clients, later peers)
    4     WORKERS                       the local ROUTER that workers dial
    5..   dialled DEALERs, one per class per neighbour (FIRST_DIAL_SOCKET)

The parts (each a class with its own state; its rules at the top of its module)::

    context.py    BrokerContext   identity, injected clocks, outbox, counters
    ports.py      (Protocols)     what each part may ask of another; the Job record
    local.py      LocalJobs       the job table here: local dispatch, queues, deadlines
    workerpool.py WorkerPool      the workers registered here (owned by LocalJobs)
    origin.py     OriginTable     our clients' jobs: placement, attempts, retries, cancel
    remote.py     RemoteJobs      jobs run here for other origins, result cache (dedup)
    links.py      PeerLinks       peer links: their table, sessions, heartbeats
    handshake.py  Handshake       (of PeerLinks) HELLO/WELCOME: whom we accept, what we say
    outbound.py   Outbound        (of PeerLinks) sends to neighbours, QoS class queues
    peers.py      PeerLink        the state of one link and its measurements
    linkstate.py  LinkState       our LSAs, flooding, SPF scheduling, partitions
    relay.py      Relay           routed messages (ours, a legacy host's, relayed), broadcast
    legacy.py     LegacyHosts     SSH-only hosts served by this broker
    clients.py    ClientTable     client connections served, bounded by max_clients
    queries.py    Queries         QUERY answers and stats
    jobrecords.py JobRecord       what QUERY jobs shows of a job; the finished ones
    eventlog.py   EventLog        recent events, for QUERY events

This face dispatches each input by its source and message type to a part,
and runs the parts' timers in a fixed order.  Parts call each other only
through the narrow interfaces of ports.py (wired once here); none reads
another's tables (origin.py reads one constant of outbound.py, for a message).

Where later work goes (one place each):

* a routed message is received (and will be verified): :meth:`Relay.on_routed`;
* an LSA is accepted (and will be verified): :meth:`LinkState.on_lsa`;
* an attempt's outcome is classified (retry, failover, answer):
  ``OriginTable._failed``; a neighbour's RTT sample lands in
  ``PeerLinks._on_pong``; a node going unreachable is seen in
  :meth:`OriginTable.topology_changed`;
* every frame leaves through ``BrokerContext.out`` (batching), and job state
  is in :class:`OriginTable` (ours) and :class:`LocalJobs` (run here).

Every job accepted ends in exactly one reply to its submitter.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast

from ..errors import (
    BadRequest,
    JobError,
    MessageTooLarge,
    ProtocolError,
    Refused,
    TooManyClients,
)
from ..jobs.router import RouteDecision, ToolRouter
from ..protocol.batch import decode_batch, group, is_batch
from ..protocol.bodies import Cancel, ErrorBody, Ping, Query, pack_value
from ..protocol.codec import (
    TAG,
    Header,
    Message,
    MsgType,
    best_effort_id,
    decode,
    sig_from_tag,
    sig_into_tag,
)
from ..protocol.frame import Frame
from ..protocol.limits import MAX_MESSAGE_FRAMES
from ..protocol.signature import (
    FEATURE_MAC,
    FEATURE_MAC3,
    MAC3_VERSION,
    MAC_VERSION,
    KeyRing,
    Signer,
)
from ..qos.manager import QoSManager
from ..routing.dijkstra import RoutingTable
from ..routing.lsdb import LinkStateDB
from ..routing.topology import NetworkTopology
from .access import OPERATOR, Grant, GrantLookup, query_refusal
from .clients import ClientTable
from .context import (
    _BATCH,
    _BROADCAST,
    _CANCEL,
    _ERROR,
    _JOB,
    _LSA,
    _PING,
    _PONG,
    _QUERY,
    _REPLY,
    _ROUTED,
    CLASS_NAMES,
    FIRST_DIAL_SOCKET,
    WORKERS,
    Authorizer,
    BrokerContext,
    BrokerLimits,
)
from .legacy import LegacyHost, LegacyHosts
from .links import PeerLinks
from .linkstate import LinkState
from .local import LocalJobs
from .origin import OriginTable
from .peers import PeerLink
from .queries import Queries
from .relay import Relay
from .remote import RemoteJobs
from .trustview import TrustView
from .workerpool import RunLocal, StopLocal, WorkerSession

__all__ = [
    "CLASS_NAMES",
    "FIRST_DIAL_SOCKET",
    "WORKERS",
    "Authorizer",
    "BrokerCore",
    "BrokerLimits",
    "WorkerSession",
]


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
        grants: GrantLookup | None = None,
        signer: Signer | None = None,
        signing_keys: Callable[[str], str | None] | None = None,
        grants_by_fingerprint: Callable[[str], Grant | None] | None = None,
        trust_snapshot: Callable[[], object] | None = None,
        incarnation: int = 0,
        pairwise_macs: bool = True,
        mac3: bool = True,
    ) -> None:
        ctx = self._ctx = BrokerContext(node_id, limits or BrokerLimits(), now, wall, name,
                                        cluster, public_key, incarnation)
        self.started = now
        #: The role and allow-lists of a client key (None: every client is an operator).
        self._grants = grants
        #: Our Ed25519 key (None: this core neither signs nor verifies) and the
        #: trust store's signing keys by node id; a neighbour whose key the
        #: store lacks is learned from its authenticated HELLO/WELCOME.
        self._signer = signer
        self._signing_keys = signing_keys
        self._learned_keys: dict[str, str] = {}
        #: The store's signing keys and grants as the per-message checks ask
        #: them, kept per trust snapshot (``trust_snapshot``).
        self._trust = TrustView(ctx, trust_snapshot, signing_keys, grants_by_fingerprint)
        keyring = KeyRing(self._signing_key_of, signer) if signer is not None else None
        self._local = LocalJobs(ctx)
        self._origin = OriginTable(ctx)
        self._remote = RemoteJobs(ctx, self._local)
        self._legacy = LegacyHosts(ctx, self._local)
        self._links = PeerLinks(ctx, self._on_peer_msg, authorize=authorize,
                                token_factory=token_factory,
                                signing_key=signer.public_hex if signer else "",
                                learn_key=self._learn_key if signer else None)
        #: Version-3 MACs (revision 10) sent to the nodes that take them, and
        #: taken; False: as a broker of revisions 8-9 (tests of mixed meshes).
        self._mac3 = mac3 = pairwise_macs and mac3
        self._linkstate = LinkState(ctx, wall, signer=signer, keyring=keyring,
                                    pairwise_macs=pairwise_macs, mac3=mac3)
        self._relay = Relay(ctx, signer=signer, keyring=keyring, serving=self._serving,
                            grant_of=self._trust.grant,
                            mac_verifier=self._mac_verifier if pairwise_macs else None,
                            mac3=mac3)
        self._clients = ClientTable(ctx)
        self._local.wire(self._origin, self._remote, self._legacy, self._linkstate)
        self._origin.wire(self._local, self._legacy, self._relay, self._linkstate.lsdb,
                          self._linkstate.routes, self._links.health,
                          self._linkstate.incarnation_of)
        self._remote.wire(self._relay)
        self._legacy.wire(self._relay, self._linkstate)
        self._links.wire(self._linkstate)
        self._linkstate.wire(self._links, self._local.pool, self._legacy, self._origin)
        self._relay.wire(self._links, self._linkstate.routes, self._remote, self._origin,
                         self._legacy)
        self._queries = Queries(ctx, self._local, self._links, self._linkstate, self._origin,
                                self._legacy, self._relay, now)

    @property
    def batching(self) -> bool:
        """Whether this broker sends BATCH to workers, clients and neighbours
        that accept it, and says so in PONGs to clients and in HELLO and
        WELCOME (the shell clears it when its message size limit is below
        protocol.batch.MIN_SIZE_TO_BATCH)."""
        return self._links.batching

    @batching.setter
    def batching(self, value: bool) -> None:
        self._links.batching = value

    @property
    def sig_in_tag(self) -> bool:
        """Whether this broker says ``sig_in_tag`` (revision 9) in HELLO and
        WELCOME: neighbours may then send it a signed message as three
        frames.  It takes them either way; cleared, it stands for a broker
        of an earlier revision (tests)."""
        return self._links.sig_in_tag

    @sig_in_tag.setter
    def sig_in_tag(self, value: bool) -> None:
        self._links.sig_in_tag = value

    # ------------------------------------------------------------ signing
    def _signing_key_of(self, node: str) -> str | None:
        if node == self._ctx.node_id and self._signer is not None:
            return self._signer.public_hex
        return self._trust.signing_key(node) or self._learned_keys.get(node)

    def _serving(self, node: str) -> str | None:
        """The broker that advertises SSH host ``node`` (and signs for it)."""
        lsa = self._linkstate.lsdb.get(node)
        if lsa is None or lsa.kind != "ssh" or len(lsa.links) != 1:
            return None
        return lsa.links[0].neighbor

    def _mac_verifier(self, dst: str) -> tuple[str, int] | None:
        """The node that verifies a routed message for ``dst`` (``dst``, or
        the broker serving SSH host ``dst``) and the MAC version to send it
        (3 when its LSA says ``mac3`` too and we take them) if its verified
        LSA says it takes pairwise MACs; else None (the message is signed)."""
        get = self._linkstate.lsdb.get
        lsa = get(dst)
        if lsa is not None and lsa.kind == "ssh":
            dst = lsa.links[0].neighbor if len(lsa.links) == 1 else ""
            lsa = get(dst) if dst else None
        if lsa is None:
            return None
        features = lsa.features
        if FEATURE_MAC not in features:
            return None
        return dst, MAC3_VERSION if self._mac3 and FEATURE_MAC3 in features else MAC_VERSION

    def _learn_key(self, node: str, key: str) -> str | None:
        """A neighbour authenticated as ``node`` signs with ``key``: None when
        that is acceptable (remembered if the trust store has no key for it),
        else why the link is refused."""
        if not key:
            return (f"'{node}' does not sign its messages (a broker older than revision 3"
                    " of protocol v1); this broker requires signatures: upgrade it")
        stored = self._signing_keys(node) if self._signing_keys is not None else None
        if stored and stored != key:
            return (f"'{node}' presented signing key {key[:16]}..., not the one trusted"
                    f" here for it ({stored[:16]}...)")
        if not stored:
            if node not in self._learned_keys and len(self._learned_keys) >= MAX_LEARNED_KEYS:
                self._learned_keys.pop(next(iter(self._learned_keys)))
            self._learned_keys[node] = key
        return None

    # ------------------------------------------------ the shell's interface
    @property
    def node_id(self) -> str:
        return self._ctx.node_id

    @property
    def name(self) -> str:
        return self._ctx.name

    @property
    def cluster(self) -> str:
        return self._ctx.cluster

    @property
    def public_key(self) -> str:
        return self._ctx.public_key

    @property
    def incarnation(self) -> int:
        """This broker run (random, new at each start; see docs/protocol.md §15)."""
        return self._ctx.incarnation

    @property
    def limits(self) -> BrokerLimits:
        return self._ctx.limits

    @property
    def out(self) -> list[tuple[int, list[Frame]]]:
        """Frames to send: (socket index, frames including the routing id)."""
        return self._ctx.out

    @out.setter
    def out(self, value: list[tuple[int, list[Frame]]]) -> None:
        self._ctx.out = value

    @property
    def urgent(self) -> list[tuple[int, list[Frame]]]:
        """Heartbeat frames to send before ``out``, at once (the shell then
        calls :meth:`stamp_pings`); ``(socket index, frames)`` as in ``out``."""
        return self._ctx.urgent

    @urgent.setter
    def urgent(self, value: list[tuple[int, list[Frame]]]) -> None:
        self._ctx.urgent = value

    def stamp_pings(self, sent_at: float) -> None:
        """The shell sent ``urgent`` at ``sent_at`` (monotonic s)."""
        self._links.stamp_pings(sent_at)

    @property
    def events(self) -> list[tuple[str, Any]]:
        """Events for the shell to emit: (name, payload)."""
        return self._ctx.events

    @events.setter
    def events(self, value: list[tuple[str, Any]]) -> None:
        self._ctx.events = value

    @property
    def actions(self) -> list[tuple[Any, ...]]:
        """Things only the shell can do (open sockets): ("dial", node, host, port)."""
        return self._ctx.actions

    @actions.setter
    def actions(self, value: list[tuple[Any, ...]]) -> None:
        self._ctx.actions = value

    @property
    def counters(self) -> dict[str, int]:
        return self._ctx.counters

    @property
    def errors(self) -> dict[str, int]:
        return self._ctx.errors

    @property
    def workers(self) -> dict[bytes, WorkerSession]:
        return self._local.pool.workers

    @property
    def links(self) -> dict[str, PeerLink]:
        return self._links.links

    @property
    def legacy(self) -> dict[str, LegacyHost]:
        return self._legacy.hosts

    @property
    def qos(self) -> QoSManager:
        return self._links.qos

    @property
    def lsdb(self) -> LinkStateDB:
        return self._linkstate.lsdb

    @property
    def routes(self) -> RoutingTable:
        return self._linkstate.routes

    @property
    def topology(self) -> NetworkTopology:
        """The original's NetworkTopology API, as a view of our link-state database."""
        return self._linkstate.topology

    @property
    def router(self) -> ToolRouter:
        return self._origin.router

    @property
    def broadcasts(self) -> deque[dict[str, Any]]:
        return self._relay.broadcasts

    # ------------------------------------------------------------ frontend
    def on_frontend(self, cls: int, frames: list[Frame], now: float,
                    uid: str | None = None) -> None:
        """Handle one message arriving on the frontend ROUTER of class ``cls``.

        Routing ids chosen by ZeroMQ (clients) start with a zero byte; any
        other routing id is a claimed node id (a peer), verified against the
        Curve key ``uid`` that ZAP authenticated.  A client's BATCH is
        unpacked and each message in it handled as if it came alone.
        """
        ctx = self._ctx
        ctx.now = now
        rid = cast(bytes, frames[0])  # (the first frame: always bytes)
        if rid[:1] != b"\x00":
            self._links.on_router(cls, rid, uid, frames, now)
            return
        if not self._clients.admit(cls, rid, now, self._origin.clients_with_jobs):
            n = ctx.limits.max_clients
            ctx.send_error(cls, rid, best_effort_id(frames, 1), "", cls, TooManyClients(
                f"broker '{ctx.node_id}' serves at most {n} client connection"
                f"{'s' if n != 1 else ''} at once (limits.max_clients); try again later"),
                corr=best_effort_id(frames, 1))
            return
        try:
            msg = decode(frames, 1)
        except ProtocolError as exc:
            self._refuse_malformed(cls, rid, frames, exc)
            return
        if msg.header.type == _BATCH:
            self._on_client_batch(cls, rid, frames, now, uid)
            return
        self._on_client(cls, rid, frames, msg, now,
                        OPERATOR if self._grants is None else self._grants(uid))

    def _on_client(self, cls: int, rid: bytes, frames: list[Frame], msg: Message,
                   now: float, grant: Grant | None) -> None:
        """A client's message ``msg`` (not a BATCH; frames: routing id, tag,
        header, body), from a key that may do what ``grant`` says (None: not
        trusted as a client)."""
        ctx = self._ctx
        h = msg.header
        t = h.type
        if grant is None:
            # Trusted by ZAP (as a node only, say), but not as a client.
            if t == _PING:
                ctx.out.append((cls, [rid, TAG, ctx.header(_PONG, h.id, h.src, cls, h.id), b""]))
                return
            ctx.send_error(cls, rid, h.id, h.src, cls, Refused(
                "this key is not trusted as a client here (operone keys accept --client)",
                job_id=h.id), corr=None if t == _JOB else h.id)
        elif t == _JOB:
            self._origin.submit(cls, rid, h, frames, msg.body, now, grant)
        elif t == _QUERY:
            self._on_query(cls, rid, h, msg.body, now, grant)
        elif t == _CANCEL:
            try:
                reason = Cancel.unpack(msg.body).reason
            except ProtocolError:
                reason = ""
            self._origin.cancel(h.id, reason, client=rid)
        elif t == _BROADCAST:
            if not grant.operator:
                ctx.send_error(cls, rid, h.id, h.src, cls, Refused(
                    f"broadcast needs role 'operator'; this client key has role"
                    f" '{grant.role}'"), corr=h.id)
                return
            self._relay.on_client_broadcast(cls, rid, h, msg.body, now)
        elif t == _PING:
            # The body says which broker run answers (a client tells a restart
            # by it); a v1 client ignores it.
            # ``batch``: this broker accepts BATCH from the client (revision 7).
            ctx.out.append((cls, [rid, TAG, ctx.header(_PONG, h.id, h.src, cls, h.id),
                                  Ping(0, ctx.incarnation, batch=self.batching).pack()]))
        else:
            ctx.send_error(
                cls, rid, h.id, h.src, cls,
                BadRequest(f"message type {MsgType(t).name} is not accepted from a client"),
            )

    def _on_client_batch(self, cls: int, rid: bytes, frames: list[Frame], now: float,
                         uid: str | None) -> None:
        """A client's BATCH: refused whole when not well formed (as any
        malformed message is), else each message handled alone."""
        try:
            msgs = decode_batch(frames, 1)
        except ProtocolError as exc:
            self._refuse_malformed(cls, rid, frames, exc)
            return
        self._clients.sent_batch(cls, rid)
        self._ctx.counters["batches_received"] += 1
        # Each message as if it came alone, from the connection admitted and
        # the key looked up once for the BATCH.
        grant = OPERATOR if self._grants is None else self._grants(uid)
        for m in msgs:
            inner_frames = [rid, *m]
            try:
                msg = decode(inner_frames, 1)
                if msg.header.type == _BATCH:
                    raise ProtocolError("a BATCH may not contain a BATCH")
            except ProtocolError as exc:
                self._refuse_malformed(cls, rid, inner_frames, exc)
                continue
            self._on_client(cls, rid, inner_frames, msg, now, grant)

    def _refuse_malformed(self, cls: int, rid: bytes, frames: list[Frame],
                          exc: ProtocolError) -> None:
        """A client's message (or BATCH) that does not decode: counted, and
        the client hears what was wrong (it passed ZAP); nothing else changes."""
        ctx = self._ctx
        ctx.counters["malformed"] += 1
        ctx.count_error(exc.code)
        body = ErrorBody(exc.code, str(exc), None, ctx.node_id, {}).pack()
        mid = best_effort_id(frames, 1)
        ctx.out.append((cls, [rid, TAG, ctx.header(_ERROR, mid, "", cls), body]))

    def batched(self, out: list[tuple[int, list[Frame]]]) -> list[tuple[int, list[Frame]]]:
        """``out`` as it goes on the wire: several messages of one flush to a
        worker, client or neighbour that accepts BATCH grouped into BATCHes
        (protocol/batch.py; our dialled DEALERs carry no routing id); a
        signed message that goes alone to a neighbour that said
        ``sig_in_tag``, as three frames (its signature after the tag:
        codec.sig_into_tag); everything else unchanged.  Counts
        ``batches_sent``."""
        sent = group(out, self._accepts_batch, self._class_of, FIRST_DIAL_SOCKET)
        if sent is not out and len(sent) < len(out):
            n = 0
            for idx, frames in sent:
                if is_batch(frames, 0 if idx >= FIRST_DIAL_SOCKET else 1):
                    n += 1
            self._ctx.counters["batches_sent"] += n
        return self._sigs_in_tags(sent)

    def _sigs_in_tags(self, sent: list[tuple[int, list[Frame]]]
                      ) -> list[tuple[int, list[Frame]]]:
        """``sent`` with each lone signed message for a neighbour that said
        ``sig_in_tag`` on that transport as three frames (revision 9)."""
        folded: list[tuple[int, list[Frame]]] | None = None
        for i, (idx, frames) in enumerate(sent):
            # Only a neighbour gets 4 operone frames (workers and clients
            # never see a signature): on a dialled DEALER, or on a frontend
            # after a routing id.
            if idx >= FIRST_DIAL_SOCKET:
                if len(frames) != 4 or not self._links.takes_sig_in_tag(idx, b""):
                    continue
                frames = sig_into_tag(frames)
            elif (idx < WORKERS and len(frames) == 5
                  and self._links.takes_sig_in_tag(idx, cast(bytes, frames[0]))):
                frames = sig_into_tag(frames, 1)
            else:
                continue
            if folded is None:
                folded = list(sent)
            folded[i] = (idx, frames)
        return sent if folded is None else folded

    def _class_of(self, sock: int) -> int:
        """The priority class of a socket (a BATCH header's ``cls``): a
        frontend's, a dialled DEALER's; the workers' socket carries every
        class: 0."""
        if sock < WORKERS:
            return sock
        return self._links.class_of_dealer(sock) if sock > WORKERS else 0

    def _accepts_batch(self, sock: int, rid: bytes) -> bool:
        if not self._links.batching:
            return False
        if sock == WORKERS:
            w = self._local.pool.workers.get(rid)
            return w is not None and w.batch
        if sock > WORKERS or rid[:1] != b"\x00":  # a neighbour: dialled, accepted
            return self._links.accepts_batch(sock, rid)
        return self._clients.accepts_batch(sock, rid)

    def on_oversize(self, sock: int, head: list[Frame], nframes: int, nbytes: int,
                    now: float) -> None:
        """The shell read and dropped a message past the whole-message limits
        (``head``: its first frames, clipped).  A client hears ``too_large``;
        anything else is only counted."""
        ctx = self._ctx
        ctx.now = now
        ctx.counters["malformed"] += 1
        ctx.count_error("too_large")
        rid = head[0] if head else b""
        if sock >= WORKERS or rid[:1] != b"\x00":
            return
        err = MessageTooLarge(
            f"message of {nframes - 1} frames and {nbytes - len(rid)} bytes dropped unread:"
            f" a message has at most {MAX_MESSAGE_FRAMES - 1} frames, and all of them"
            " together at most the node's limits.max_message_size bytes")
        body = ErrorBody(err.code, str(err), None, ctx.node_id, {}).pack()
        ctx.out.append((sock, [rid, TAG, ctx.header(_ERROR, best_effort_id(head, 1), "",
                                                    sock), body]))

    def _on_query(self, cls: int, rid: bytes, h: Header, body: Frame, now: float,
                  grant: Grant = OPERATOR) -> None:
        ctx = self._ctx
        ctx.counters["queries"] += 1
        try:
            q = Query.unpack(body)
        except ProtocolError as exc:
            ctx.send_error(cls, rid, h.id, h.src, cls, BadRequest(str(exc)), corr=h.id)
            return
        refusal = query_refusal(grant, q.what, q.args.get("allocate") is not None)
        if refusal is not None:
            ctx.send_error(cls, rid, h.id, h.src, cls, Refused(refusal), corr=h.id)
            return
        # A non-operator cancels only the jobs submitted with its own key.
        try:
            answer = self._queries.answer(q, now,
                                          owner=None if grant.operator else grant.fingerprint)
        except BadRequest as bad:  # args the query cannot take
            # (Not ``exc``: compiled by mypyc, a name keeps the type of its
            # first binding, ProtocolError above, and a BadRequest bound to
            # it would raise TypeError.)
            ctx.send_error(cls, rid, h.id, h.src, cls, bad, corr=h.id)
            return
        if answer is None:
            ctx.send_error(cls, rid, h.id, h.src, cls,
                           BadRequest(f"unknown query '{q.what}'"), corr=h.id)
            return
        ctx.out.append((cls, [rid, TAG, ctx.header(_REPLY, h.id, h.src, cls, h.id),
                              pack_value(answer)]))

    def log_events(self, events: list[tuple[str, Any]]) -> None:
        """The shell emitted ``events``: keep them for QUERY events."""
        self._queries.events.add_all(events, self._ctx.wall())

    def answer_query(self, q: Query, now: float) -> Any:
        """The answer to a QUERY, or None when the query is unknown."""
        return self._queries.answer(q, now)

    def cancel_job(self, jid: str, reason: str = "", *, client: bytes | None = None,
                   now: float | None = None) -> bool:
        """Cancel origin job ``jid`` (of ``client``, when given) wherever it
        runs; its submitter gets JobCancelled.  False when there is no such job."""
        if now is not None:
            self._ctx.now = now
        return self._origin.cancel(jid, reason, client=client)

    def decide(self, tool: str, caps: tuple[str, ...] = (), *, prefer_local: bool = False,
               exclude: tuple[str, ...] = ()) -> RouteDecision:
        """Where a job for ``tool`` needing ``caps`` would run now, and why."""
        return self._origin.decide(tool, caps, prefer_local=prefer_local, exclude=exclude)

    # ------------------------------------------------------------- workers
    def on_worker(self, frames: list[Frame], now: float) -> None:
        """Handle one message from a local worker (each message of a BATCH
        as if it came alone; a BATCH not well formed is counted and dropped,
        as any malformed message from a worker is)."""
        self._ctx.now = now
        if is_batch(frames, 1):
            try:
                msgs = decode_batch(frames, 1)
            except ProtocolError:
                self._ctx.counters["malformed"] += 1
                return
            self._ctx.counters["batches_received"] += 1
            rid = cast(bytes, frames[0])  # (the first frame: always bytes)
            for m in msgs:
                self._local.on_worker([rid, *m], now)
        else:
            self._local.on_worker(frames, now)
        if self._origin.waiting:  # jobs wait for this node's workers (start-up grace)
            self._origin.release_waiting(now)

    def add_virtual_worker(self, name: str, tools: frozenset[str], run: RunLocal,
                           stop: StopLocal, *, slots: int = 1024, pid: int = 0) -> None:
        """Serve ``tools`` in the shell's own process (``Broker.register_tool``):
        their jobs start with ``run(job id, tool, args, deadline, cls)``, are
        stopped with ``stop(job id)``, and end with :meth:`virtual_done`.
        Neither callback may call back into the core."""
        self._local.add_virtual_worker(name, tools, slots, pid, run, stop)

    def virtual_done(self, jid: str, value: Any, error: JobError | None, duration: float,
                     now: float) -> None:
        """An in-process tool's job ``jid`` ended (``error`` None: it returned ``value``)."""
        self._ctx.now = now
        self._local.virtual_done(jid, value, error, duration)

    def on_unroutable(self, sock: int, frames: list[Frame], now: float) -> None:
        """The shell could not deliver ``frames`` (the peer is gone)."""
        if sock < WORKERS and is_batch(frames, 1):
            # One of our BATCHes (batched()): each message it held was not delivered.
            for m in decode_batch(frames, 1):
                self.on_unroutable(sock, [frames[0], *m], now)
            return
        self._ctx.now = now
        if sock == WORKERS and is_batch(frames, 1):
            msgs = decode_batch(frames, 1)
            self._ctx.counters["unroutable"] += len(msgs)
            self._local.on_unroutable(frames, msgs)
            return
        self._ctx.counters["unroutable"] += 1
        if sock == WORKERS:
            self._local.on_unroutable(frames)
        elif (sock < WORKERS and frames and frames[0][:1] != b"\x00"
              and self._links.on_unroutable(sock, frames, now)):
            # A neighbour's connection to our ROUTER is gone: the link is down
            # now, and a routed message goes again once the routes changed
            # (as the 4 frames it was: the next hop may not take 3).
            if len(frames) == 4 and len(frames[1]) > 3:
                frames = sig_from_tag(frames, 1)
            self._relay.hold(sock, frames[1:], now)
        elif sock < WORKERS and frames:
            self._clients.gone(sock, cast(bytes, frames[0]))  # a client went away

    # =========================================================== peer mesh
    def add_dialled_link(self, node: str, socks: list[int], now: float, *, address: str = "",
                         token: str | None = None) -> PeerLink:
        """We dialled ``node`` with one DEALER per class (socket indices
        ``socks``); start the handshake."""
        return self._links.add_dialled_link(node, socks, now, address=address, token=token)

    def remove_link(self, node: str, now: float) -> list[int]:
        """Forget the link to ``node``; returns the dialled sockets to close."""
        return self._links.remove_link(node, now)

    def transport_lost(self, node: str, now: float) -> None:
        """The shell saw our dialled connection to ``node`` drop."""
        self._links.transport_lost(node, now)

    def allocate_bandwidth(self, peer: str, mb_per_s: float | None) -> None:
        """Limit what this broker sends to neighbour ``peer`` (MB/s; None: no limit)."""
        self._links.allocate_bandwidth(peer, mb_per_s)

    def qos_metrics(self, peer: str) -> dict[str, Any] | None:
        """The QoS metrics of the link to ``peer`` (the original's getQoSMetrics)."""
        return self._links.qos_metrics(peer)

    def on_dealer(self, sock: int, frames: list[Frame], now: float) -> None:
        """Handle a message from a neighbour on a DEALER we dialled."""
        self._ctx.now = now
        self._links.on_dealer(sock, frames, now)

    def _on_peer_msg(self, link: PeerLink, cls: int, msg: Message, frames: list[Frame],
                     now: float) -> None:
        """A message from an established neighbour that is not part of the
        session protocol (frames: tag, header, body...)."""
        h: Header = msg.header
        t = h.type
        if t in _ROUTED:
            self._relay.on_routed(link, h, frames, now)
        elif t == _LSA:
            self._linkstate.on_lsa(link, msg.body, now)
        elif t == _BROADCAST:
            self._relay.on_broadcast(link.node, h, frames, now)
        else:
            self._ctx.counters["malformed"] += 1

    def poll(self, now: float) -> None:
        """Work that batches up: originate our LSA if it changed, react to
        topology changes.  The shell calls this after each batch of messages."""
        self._linkstate.poll(now)
        self._relay.release_held(now)

    def route_info(self, dest: str) -> dict[str, Any]:
        """The route to ``dest`` as ``operone route`` shows it (NetworkTopology)."""
        return self._linkstate.route_info(dest)

    def topology_graph(self) -> dict[str, Any]:
        """Nodes and edges of the link-state graph (NetworkTopology)."""
        return self._linkstate.topology_graph()

    def network_stats(self) -> dict[str, Any]:
        """The original's getNetworkStats(), over the whole link-state graph."""
        return self._linkstate.network_stats()

    # ------------------------------------------------------- legacy hosts
    def add_legacy_host(self, name: str, slots: int) -> None:
        """Run jobs for node ``name`` (an SSH-only host) from this broker; the
        mesh sees it as a node linked to us, offering LEGACY_TOOLS."""
        self._legacy.add(name, slots)

    def legacy_done(self, jid: str, value: Any, error: JobError | None, duration: float,
                    now: float) -> None:
        """The shell finished running job ``jid`` on its legacy host."""
        self._ctx.now = now
        self._legacy.done(jid, value, error, duration)

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        """Run timers: heartbeats, worker liveness, job deadlines, the mesh."""
        self._ctx.now = now
        self._local.tick(now)
        links = self._links
        links.tick(now)
        self._origin.tick(now)
        self._remote.expire(now)
        self._linkstate.tick(now)
        links.expire_pings(now)
        self._linkstate.check_load(now, links.next_ping)
        self._linkstate.check_partition(now)
        links.release_due(now)
        self._clients.expire(now, self._origin.clients_with_jobs)
        self.poll(now)

    def next_deadline(self) -> float:
        """When :meth:`tick` must next run."""
        t = self._local.next_deadline()
        t = self._origin.next_deadline(t)
        t = self._links.next_deadline(t)
        t = self._relay.next_deadline(t)
        t = self._clients.next_deadline(t)
        return self._linkstate.next_deadline(t)

    # ---------------------------------------------------------------- state
    def stats(self, now: float) -> dict[str, Any]:
        """Counters and gauges, as answered to QUERY "stats"."""
        return self._queries.stats(now)

    def shutdown(self, reason: str = "the broker is shutting down") -> None:
        """Answer every job in progress with an error and tell workers to go."""
        self._local.stop_jobs(reason)
        self._origin.shutdown(reason)
        self._links.bye_all(reason)
        self._local.pool.disconnect_all(reason)


#: Signing keys learned from neighbours' HELLOs (the trust store had none):
#: one per neighbour, and far above max_peers.
MAX_LEARNED_KEYS: Final = 4096

