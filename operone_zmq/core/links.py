"""Peer links of a broker: the table, sessions and heartbeats (no I/O).

The state of one link and its transitions are in :mod:`.peers`
(:class:`~.peers.PeerLink`); this part owns the table of links and runs the
session protocol over it, with two parts of its own:

* :mod:`.handshake` (:class:`~.handshake.Handshake`): whom a HELLO or
  WELCOME may bring up, and the HELLO, WELCOME and refusals we send; here
  an accepted handshake brings its transport up;
* :mod:`.outbound` (:class:`~.outbound.Outbound`): what we send neighbours,
  shaped by QoS per (link, class) (class queues of at most
  :data:`~.outbound.MAX_LINK_QUEUE`, released critical class first when the
  token buckets allow; a link that goes down drops its queues).

Its rules:

* HELLO/WELCOME/BYE on both transports (dialled DEALERs, accepted ROUTER
  routing ids), PING/PONG heartbeats and liveness.
* An accepted peer is who ZAP verified: its routing id is its claimed node
  id, and every message must come with the Curve key (``uid``) its HELLO
  came with; a HELLO passes the :data:`~.context.Authorizer`.
* Every message from an established neighbour is counted, refreshes the
  link's liveness, and goes to the face's ``deliver`` callback, except the
  session messages (PING, PONG, BYE, WELCOME) handled here.
* BATCH (revision 7): we say ``batch`` in HELLO and WELCOME when
  :attr:`PeerLinks.batching`; a transport whose neighbour said it in the
  handshake that brought it up may be sent BATCHes (:meth:`accepts_batch`).
  A BATCH received on either transport is unpacked here and each message in
  it handled exactly as if it had come alone on that connection (the same
  session and key checks, then the same part); one not well formed is
  counted ``malformed`` and dropped whole, as a malformed message is.
* A link coming up or going down marks our LSA dirty (urgent); its cost
  *band* moving (:class:`~operone_zmq.routing.damping.CostBand`, never a
  raw RTT wobble) marks it dirty at the paced rate.  A link coming up (or a
  live neighbour saying HELLO again) gets our whole database.
* Liveness is :class:`~operone_zmq.routing.damping.PeerLiveness`: a link
  goes down after ``peer_liveness x peer_interval`` s in which this broker
  was *listening* and heard nothing (``now`` is stamped by the shell at
  receive time; a stall of our own loop is not the neighbour's silence).
* An unroutable send on a frontend ROUTER to a neighbour's routing id
  (ROUTER_MANDATORY: its connection is gone) is evidence at once: the
  accepted transport is down; the message goes out on the dialled transport
  if that is still up, else the link is down now, not 3 s later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

from ..errors import ProtocolError
from ..protocol.batch import decode_batch
from ..protocol.bodies import Bye, Ping
from ..protocol.codec import TAG, Header, Message, decode, sig_from_tag
from ..protocol.frame import Frame
from ..qos.manager import QoSManager
from ..routing.damping import PeerLiveness
from .context import (
    _BATCH,
    _BYE,
    _HELLO,
    _PING,
    _PONG,
    _WELCOME,
    Authorizer,
    BrokerContext,
)
from .handshake import Handshake
from .outbound import Outbound
from .peers import (
    DOWN,
    HELLO_SENT,
    MAX_HELLO_BACKOFF,
    MIN_HELLO_BACKOFF,
    REFUSED_BACKOFF,
    UP,
    PeerLink,
    node_of_rid,
)
from .ports import LinkEvents

__all__ = ["LOSS_CHANGE", "Deliver", "PeerLinks"]

#: Messages of the session protocol, handled here; all others are delivered.
_SESSION: Final = frozenset({_PING, _PONG, _BYE, _WELCOME})

#: Change of a link's measured loss (fraction) that is worth a new LSA: 2 %
#: is two heartbeats of a 100-ping window, well above a quiet link's noise.
LOSS_CHANGE: Final = 0.02

#: Pings remembered per link awaiting their PONG.
_MAX_PINGS: Final = 64

#: (link, class, decoded message, frames from the tag on, now): a message from
#: an established neighbour that is not part of the session protocol.
Deliver = Callable[[PeerLink, int, Message, list[Frame], float], None]


class PeerLinks:
    """The links to neighbour brokers: their table, sessions and heartbeats."""

    def __init__(self, ctx: BrokerContext, deliver: Deliver, *,
                 authorize: Authorizer | None = None,
                 token_factory: Callable[[], str | None] | None = None,
                 signing_key: str = "",
                 learn_key: Callable[[str, str], str | None] | None = None) -> None:
        self._ctx = ctx
        self._deliver = deliver
        self.links: dict[str, PeerLink] = {}
        self._link_by_sock: dict[int, PeerLink] = {}
        #: The checks and messages of HELLO/WELCOME (handshake.py).
        self._handshake = Handshake(ctx, self.links, authorize=authorize,
                                    token_factory=token_factory, signing_key=signing_key,
                                    learn_key=learn_key)
        #: Measurements (heartbeats, here) and shaping (outbound.py) of each link.
        self.qos = QoSManager(clock=lambda: ctx.now)
        # Edges only (qos/manager.py): once when a link crosses a threshold,
        # once when it recovers.
        for kind in ("latency", "packet-loss"):
            for state, prefix in (("violated", "violation"), ("recovered", "recovered")):
                self.qos.on(f"{prefix}:{kind}", lambda d, k=kind, st=state: ctx.events.append(
                    ("qos:violation", {"kind": k, "state": st, **d})))
        #: What we send neighbours, shaped by QoS, and its class queues (outbound.py).
        self._out = Outbound(ctx, self.links, self.qos)
        self.next_ping = ctx.now + ctx.limits.peer_interval
        limits = ctx.limits
        #: Which neighbours are silent, counting only time we were listening.
        self.liveness = PeerLiveness(limits.peer_liveness * limits.peer_interval,
                                     limits.peer_interval)
        #: PINGs put in ``ctx.urgent`` whose send time the shell has not given.
        self._unstamped: list[tuple[str, int]] = []
        #: node -> the loss our LSA advertises for the link (one per link).
        self._advertised_loss: dict[str, float] = {}
        #: Whether we offer BATCH in HELLO and WELCOME (the face's
        #: ``BrokerCore.batching``: off below MIN_SIZE_TO_BATCH).
        self.batching = True
        #: Whether we say ``sig_in_tag`` in HELLO and WELCOME (revision 9;
        #: ``BrokerCore.sig_in_tag``).  We take such messages either way.
        self.sig_in_tag = True

    def wire(self, linkstate: LinkEvents) -> None:
        self._linkstate = linkstate

    # ------------------------------------------------------------- the table
    def get(self, node: str) -> PeerLink | None:
        return self.links.get(node)

    def up_links(self) -> list[PeerLink]:
        return [link for link in self.links.values() if link.up]

    def advertise_costs(self) -> list[tuple[str, float]]:
        """(node, cost band) of every up link, for our LSA."""
        return [(link.node, link.cost) for link in self.links.values() if link.up]

    def link_loss(self, node: str) -> float:
        """The loss (fraction) of the link to ``node`` for our LSA
        (qos/metrics.py: unanswered or retransmitted heartbeats): the value
        advertised before until the measured one moved LOSS_CHANGE from it
        (a refresh of an unchanged LSA must not change the graph: a loaded
        loop's late PONGs wobble a quiet link's loss by a percent or two)."""
        m = self.qos.get_metrics(node)
        measured = round(m.packet_loss, 3) if m is not None else 0.0
        before = self._advertised_loss.get(node)
        if before is not None and abs(measured - before) < LOSS_CHANGE:
            return before
        self._advertised_loss[node] = measured
        return measured

    def _loss_moved(self, node: str) -> None:
        m = self.qos.get_metrics(node)
        if m is not None and abs(m.packet_loss - self._advertised_loss.get(node, 0.0)) \
                >= LOSS_CHANGE:
            self._linkstate.mark_dirty()

    def up_nodes(self) -> list[str]:
        return sorted(n for n, link in self.links.items() if link.up)

    def describe(self, now: float) -> list[dict[str, Any]]:
        return [link.describe(now) for link in self.links.values()]

    def queue_lengths(self) -> dict[str, dict[str, int]]:
        return self._out.queue_lengths()

    def health(self, neighbour: str) -> float:
        """0-100: the QoS health score of the first hop (latency, loss, jitter)."""
        if self.qos.get_metrics(neighbour) is None:
            return 100.0
        return float(self.qos.get_health_score(neighbour))

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
        self._handshake.send_hello(link, now, self.batching, self.sig_in_tag)
        return link

    def remove_link(self, node: str, now: float) -> list[int]:
        """Forget the link to ``node``; returns the dialled sockets to close."""
        ctx = self._ctx
        link = self.links.get(node)
        if link is None:
            return []
        if link.up:
            self._out.send(link, 0, [TAG, ctx.header(_BYE, ctx.next_id(), node, 0),
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

    def on_unroutable(self, cls: int, frames: list[Frame], now: float) -> bool:
        """Our ROUTER of class ``cls`` had no connection for routing id
        ``frames[0]`` (a neighbour's node id): its accepted transport is gone.
        The message goes out on the dialled transport when that is up;
        otherwise the link is down now (its silence would take 3 s to say so,
        and every job routed into it meanwhile would be lost).  Returns False
        when the message went out on the dialled transport, True when it is
        lost (the caller may re-route it)."""
        try:
            node = cast(bytes, frames[0]).decode()
        except UnicodeDecodeError:
            return True
        link = self.links.get(node)
        if link is None or link.rid != frames[0] or not link.accepted_up:
            return True
        self._ctx.counters["peers_unroutable"] += 1
        link.accepted_up = False
        if link.up:  # the dialled transport still works: resend on it
            if link.dial is not None and 0 <= cls < len(link.dial):
                self._ctx.out.append((link.dial[cls], frames[1:]))
                return False
            return True
        self._on_link_down(link, now, "its connection is gone (unroutable send)")
        if link.dial is None:
            del self.links[node]
        return True

    def _heard(self, link: PeerLink, now: float) -> None:
        link.heard = now
        self.liveness.heard(link.node, now)

    def _on_link_up(self, link: PeerLink, now: float) -> None:
        link.up_since = now
        self._heard(link, now)
        link.backoff = MIN_HELLO_BACKOFF
        link.last_error = ""
        self._ctx.events.append(("peer:connected", {"node": link.node,
                                                    "name": link.name or link.node,
                                                    "address": link.address}))
        self._linkstate.link_up(link)

    def _on_link_down(self, link: PeerLink, now: float, reason: str) -> None:
        link.last_error = reason
        link.dial_batch = link.accepted_batch = False
        link.dial_sig_in_tag = link.accepted_sig_in_tag = False
        link.pings.clear()
        link.reset_band()
        self.liveness.forget(link.node)
        self._advertised_loss.pop(link.node, None)
        self._linkstate.mark_dirty()
        self._ctx.events.append(("peer:disconnected", {"node": link.node, "reason": reason}))

    # ------------------------------------------------------------- sending
    def takes_sig_in_tag(self, sock: int, rid: bytes) -> bool:
        """As :meth:`accepts_batch`, for ``sig_in_tag`` (revision 9): whether
        a signed message may go to that neighbour as three frames."""
        link = self._up_transport(sock, rid)
        return link is not None and (link.accepted_sig_in_tag if rid
                                     else link.dial_sig_in_tag)

    def accepts_batch(self, sock: int, rid: bytes) -> bool:
        """Whether the neighbour reached by socket ``sock`` (with routing id
        ``rid`` on a frontend ROUTER; b"" on one of our DEALERs) said
        ``batch`` in the handshake of that transport, which is up."""
        link = self._up_transport(sock, rid)
        return link is not None and (link.accepted_batch if rid else link.dial_batch)

    def _up_transport(self, sock: int, rid: bytes) -> PeerLink | None:
        """The link whose transport is socket ``sock`` (our DEALER, ``rid``
        b"") or routing id ``rid`` on a frontend ROUTER, when that transport
        is up (the flags of its handshake then hold)."""
        if not rid:
            link = self._link_by_sock.get(sock)
            return link if link is not None and link.dial_state == UP else None
        try:
            node = node_of_rid(rid).decode()
        except UnicodeDecodeError:
            return None
        link = self.links.get(node)
        return link if link is not None and link.accepted_up and link.rid == rid else None

    def class_of_dealer(self, sock: int) -> int:
        """The priority class of our dialled DEALER ``sock`` (0 if unknown)."""
        link = self._link_by_sock.get(sock)
        return link.dial.index(sock) if link is not None and link.dial is not None else 0

    def send(self, link: PeerLink, cls: int, frames: list[Frame], *,
             urgent: bool = False) -> bool:
        """Send on the link's preferred transport, shaped by QoS
        (:meth:`.outbound.Outbound.send`); False when it has no transport up
        or its queue for the class is full."""
        return self._out.send(link, cls, frames, urgent=urgent)

    def release_due(self, now: float) -> None:
        """Send what the token buckets allow, when a queued message is due."""
        self._out.release_due(now)

    def allocate_bandwidth(self, peer: str, mb_per_s: float | None) -> None:
        """Limit what this broker sends to neighbour ``peer`` (MB/s; None: no limit)."""
        self._out.allocate_bandwidth(peer, mb_per_s)

    def qos_metrics(self, peer: str) -> dict[str, Any] | None:
        """The QoS metrics of the link to ``peer`` (the original's getQoSMetrics)."""
        return self._out.qos_metrics(peer)

    def bye_all(self, reason: str) -> None:
        """Say BYE on every up link (shutdown)."""
        ctx = self._ctx
        send = self._out.send
        for link in list(self.links.values()):
            if link.up:
                send(link, 0, [TAG, ctx.header(_BYE, ctx.next_id(), link.node, 0),
                               Bye(reason, "shutdown").pack()])

    # --------------------------------------------------- incoming from peers
    def on_router(self, cls: int, rid: bytes, uid: str | None, frames: list[Frame],
                  now: float, inner: bool = False) -> None:
        """A message on a frontend ROUTER from a routing id that is a node id
        (``inner``: it came in a BATCH)."""
        ctx = self._ctx
        if len(frames) == 4 and len(frames[1]) > 3:
            frames = sig_from_tag(frames, 1)
        try:
            msg = decode(frames, 1)
        except ProtocolError:
            ctx.counters["malformed"] += 1
            return  # unverified or broken peer: counted, not answered
        try:
            node = node_of_rid(rid).decode()
        except UnicodeDecodeError:
            ctx.counters["malformed"] += 1
            return
        h = msg.header
        if h.type == _HELLO:
            self._on_hello(cls, rid, node, uid, h, msg.body, now)
            return
        link = self.links.get(node)
        if link is None or link.rid != rid or not link.accepted_up:
            # Not a peer we accepted (or it restarted, or this is a connection
            # of another dial than the accepted one): ask it to say HELLO.
            ctx.counters["peers_refused"] += 1
            ctx.out.append((cls, [rid, TAG, ctx.header(_BYE, ctx.next_id(), node, cls),
                                  Bye("no session: send HELLO", "no_session").pack()]))
            return
        if uid != link.key:
            # Someone else took over this routing id: refuse, keep the link.
            ctx.counters["peer_key_mismatch"] += 1
            ctx.events.append(("security:peer_key_mismatch", {"node": node}))
            return
        if h.type == _BATCH:
            for m in self._unbatch(frames, 1, inner):
                self.on_router(cls, rid, uid, [rid, *m], now, True)
            return
        self._on_peer_msg(link, cls, msg, frames[1:], now)

    def _unbatch(self, frames: list[Frame], start: int, inner: bool) -> list[list[Frame]]:
        """The messages of a neighbour's BATCH (operone frames from
        ``start``); none when it is not well formed (counted ``malformed``)."""
        ctx = self._ctx
        try:
            if inner:
                raise ProtocolError("a BATCH may not contain a BATCH")
            msgs = decode_batch(frames, start)
        except ProtocolError:
            ctx.counters["malformed"] += 1
            return []
        ctx.counters["batches_received"] += 1
        return msgs

    def on_dealer(self, sock: int, frames: list[Frame], now: float,
                  inner: bool = False) -> None:
        """Handle a message from a neighbour on a DEALER we dialled
        (``inner``: it came in a BATCH)."""
        ctx = self._ctx
        link = self._link_by_sock.get(sock)
        if link is None:
            return
        if len(frames) == 3 and len(frames[0]) > 3:
            frames = sig_from_tag(frames, 0)
        try:
            msg = decode(frames)
        except ProtocolError:
            ctx.counters["malformed"] += 1
            return
        h = msg.header
        t = h.type
        if t == _BATCH:
            # Unpacked whatever the handshake's state: each message is then
            # taken or dropped by it as if alone (the WELCOME that brings the
            # transport up may share a BATCH with the first LSAs).
            for m in self._unbatch(frames, 0, inner):
                self.on_dealer(sock, m, now, True)
            return
        if t == _WELCOME:
            w = self._handshake.check_welcome(link, msg.body)
            if w is None:
                return
            was_up = link.up
            link.dial_state = UP
            link.name = w.name
            self._linkstate.incarnation_seen(link.node, w.incarnation, now)
            link.direct = w.direct
            link.dial_batch = w.batch
            link.dial_sig_in_tag = w.sig_in_tag
            if not was_up:
                self._on_link_up(link, now)
            self._heard(link, now)
            return
        if t == _BYE:
            try:
                bye = Bye.unpack(msg.body)
            except ProtocolError:
                bye = Bye("(unreadable reason)")
            if bye.code == "no_session" and link.dial_state == UP:
                # The neighbour restarted and forgot us: handshake again.
                link.dial_state = DOWN
                self._handshake.send_hello(link, now, self.batching, self.sig_in_tag)
                return
            was_up = link.up
            link.dial_state = DOWN
            link.last_error = f"{bye.code}: {bye.reason}"
            link.next_hello = now + max(link.backoff,
                                        REFUSED_BACKOFF if bye.code == "refused" else 0.0)
            if bye.code == "refused":
                ctx.events.append(("peer:refused", {"node": link.node, "reason": bye.reason}))
            if was_up and not link.up:
                self._on_link_down(link, now, link.last_error)
            return
        if link.dial_state != UP:
            return  # nothing but WELCOME/BYE before the handshake is done
        self._on_peer_msg(link, link.dial.index(sock) if link.dial else 0, msg, frames, now)

    def _on_hello(self, cls: int, rid: bytes, node: str, uid: str | None, h: Header,
                  body: Frame, now: float) -> None:
        """A HELLO on a frontend ROUTER: accepted (handshake.py), it brings the
        accepted transport up (or, from a live neighbour, gets our database)."""
        hello = self._handshake.check_hello(cls, rid, node, uid, body)
        if hello is None:
            return
        link = self.links.get(node)
        if link is None:
            link = self.links[node] = PeerLink(node)
        was_up = link.up
        link.rid = rid
        link.key = uid
        link.accepted_up = True
        link.name = hello.name
        link.direct = hello.direct
        link.accepted_batch = hello.batch
        link.accepted_sig_in_tag = hello.sig_in_tag
        self._handshake.send_welcome(cls, rid, node, h, self.batching, self.sig_in_tag)
        self._linkstate.incarnation_seen(node, hello.incarnation, now)
        if not was_up:
            self._on_link_up(link, now)
        else:
            # Re-HELLO from a live neighbour (it restarted): give it our database again.
            self._linkstate.send_database(link)
        self._heard(link, now)

    def _on_peer_msg(self, link: PeerLink, cls: int, msg: Message, frames: list[Frame],
                     now: float) -> None:
        """A message from an established neighbour (frames: tag, header, body...)."""
        self._heard(link, now)
        link.received += 1
        t = msg.header.type
        if t not in _SESSION:
            self._deliver(link, cls, msg, frames, now)
        elif t == _PING:
            h = msg.header
            # Urgent: the shell sends it before the rest of this batch is
            # handled, so our own loop's work is not in the neighbour's RTT.
            self._out.send(link, 0, [TAG, self._ctx.header(_PONG, h.id, link.node, 0, h.id),
                                     msg.body], urgent=True)
        elif t == _PONG:
            self._on_pong(link, msg.body, now)
        elif t == _BYE:
            self._on_bye(link, msg.body, now)
        # a WELCOME on an established link says nothing new

    def _on_pong(self, link: PeerLink, body: Frame, now: float) -> None:
        try:
            seq = Ping.unpack(body).seq
        except ProtocolError:
            return
        sent = link.pings.pop(seq, None)
        self.qos.pong_received(link.node, seq, now)
        self._loss_moved(link.node)
        if sent is not None:
            link.pongs += 1
            if link.record_rtt((now - sent) * 1000.0):
                self._linkstate.mark_dirty(urgent=False)  # a cost band moved

    def _on_bye(self, link: PeerLink, body: Frame, now: float) -> None:
        try:
            bye = Bye.unpack(body)
        except ProtocolError:
            bye = Bye("(unreadable reason)")
        was_up = link.up
        link.accepted_up = False
        if link.dial is not None:
            link.dial_state = DOWN
            link.next_hello = now + MIN_HELLO_BACKOFF
        if was_up and not link.up:
            self._on_link_down(link, now, f"{bye.code}: {bye.reason}")

    # --------------------------------------------------------------- timers
    def tick(self, now: float) -> None:
        """Liveness, heartbeat PINGs and HELLO retries."""
        ctx = self._ctx
        limits = ctx.limits
        silence = limits.peer_liveness * limits.peer_interval
        liveness = self.liveness
        liveness.loop_ran(now)
        for link in list(self.links.values()):
            if link.up and liveness.silent_for(link.node, now) >= silence:
                link.accepted_up = False
                if link.dial is not None:
                    link.dial_state = DOWN
                    link.next_hello = now
                self._on_link_down(link, now, f"no heartbeat for {silence:g} s")
                if link.dial is None:
                    del self.links[link.node]
        if now >= self.next_ping:
            self.next_ping = now + limits.peer_interval
            self._unstamped.clear()  # a shell that never stamps: keep it bounded
            for link in list(self.links.values()):
                if not link.up:
                    continue
                link.ping_seq += 1
                link.pings[link.ping_seq] = now
                link.pings_sent += 1
                self.qos.ping_sent(link.node, link.ping_seq, now)
                if len(link.pings) > _MAX_PINGS:
                    del link.pings[min(link.pings)]
                self._out.send(link, 0, [TAG, ctx.header(_PING, ctx.next_id(), link.node, 0),
                                         Ping(link.ping_seq).pack()], urgent=True)
                self._unstamped.append((link.node, link.ping_seq))
        for link in self.links.values():
            if link.dial is not None and link.dial_state != UP and now >= link.next_hello:
                if link.dial_state == HELLO_SENT and link.accepted_up:
                    link.next_hello = now + MAX_HELLO_BACKOFF
                    continue
                self._handshake.send_hello(link, now, self.batching, self.sig_in_tag)

    def stamp_pings(self, sent_at: float) -> None:
        """The shell sent ``ctx.urgent`` at ``sent_at``: that, not the tick
        that made them, is when the PINGs in it left (RTT = PONG received -
        this)."""
        for node, seq in self._unstamped:
            link = self.links.get(node)
            if link is not None and seq in link.pings:
                link.pings[seq] = sent_at
                self.qos.ping_restamped(node, seq, sent_at)
        self._unstamped.clear()

    def expire_pings(self, now: float) -> None:
        limits = self._ctx.limits
        lost = self.qos.expire_pings(now, timeout=limits.peer_liveness * limits.peer_interval)
        for node in lost:
            if node in self.links:
                self._loss_moved(node)

    def next_deadline(self, t: float) -> float:
        """The earlier of ``t`` and when :meth:`tick` or a release is next due."""
        limits = self._ctx.limits
        if self.next_ping < t:
            t = self.next_ping
        silence = limits.peer_liveness * limits.peer_interval
        now = self._ctx.now
        silent_for = self.liveness.silent_for
        for link in self.links.values():
            if link.dial is not None and link.dial_state != UP and link.next_hello < t:
                t = link.next_hello
            if link.up:
                dead_at = now + max(0.0, silence - silent_for(link.node, now))
                if dead_at < t:
                    t = dead_at
        release_at = self._out.release_at
        if release_at < t:
            t = release_at
        return t
