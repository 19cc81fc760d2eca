"""Routed and broadcast forwarding between brokers (no I/O).

Rules:

* A routed message (JOB, RESULT, ERROR, PROGRESS, CANCEL) from a neighbour
  is received in one place, :meth:`Relay.on_routed`: for this node it goes to
  :class:`~.remote.RemoteJobs` (JOB, CANCEL) or the origin table (answers);
  for one of our legacy hosts to :class:`~.legacy.LegacyHosts`; otherwise it
  is relayed by its dst with the TTL lowered by one.
* With a signer, every routed message we originate (:meth:`originate`)
  and every broadcast of our clients is signed (the fourth frame,
  :class:`~..protocol.signature.SigFrame`; a client's JOB carries its key's
  fingerprint and role); relays pass the frame on untouched.  At the
  destination the signature is verified against the trust store's key of
  the header's src (or of the broker serving src, an SSH host) before
  anything else, and the message must be new: its ``ts`` within
  :data:`REPLAY_WINDOW` of our clock and its (src, type, id, ts) not seen
  within the window.  Anything else is dropped and counted
  (``signatures_refused``, ``replays_refused``); the signature frame is
  removed before a message goes on to a worker or a client.
* With a key ring that holds our signer, a routed message for a node whose
  verified LSA names the feature ``mac`` (the broker serving it, for an SSH
  host) carries a **pairwise MAC** instead (frame version 2, revision 8):
  only that node and we can make or check it, so a relay still cannot forge
  or alter it, and it costs two BLAKE2b passes instead of an Ed25519 sign
  and verify.  A BROADCAST is always signed (every node checks it).  When
  that node's LSA names ``mac3`` too and we take them ourselves, the MAC is
  of version 3 (revision 10): over the header fields, the body's size and a
  small body itself, with no SHA-256 of it
  (:func:`~..protocol.signature.message_mac3_parts`).
* Except straight from origin to destination: a message we originate whose
  next hop is its dst, on a link whose neighbour said ``direct`` in its
  HELLO/WELCOME, goes unsigned (a client's JOB with the frame
  ``[1, nil, client, nil]``); the destination takes an unsigned message only
  from the link authenticated as its src, for itself, with ``ts`` in the
  window (CurveZMQ proves the origin and stops replays on the link;
  docs/security.md "Direct messages").
* A JOB that cannot go on (no route, TTL out) is answered to its src with
  NoRoute; other types are dropped: an ERROR for a lost CANCEL would read as
  the failure of the job's current attempt.
* A routed message that could not be delivered because its next hop's
  connection was gone (an unroutable send: the link went down at that
  moment), or whose next hop's link is already down while the routes still
  name it, is *held* (at most :data:`MAX_HELD`, for :data:`HOLD_SECONDS`) and
  sent again by its dst once the routes were recomputed without the lost
  neighbour; what still has no route then is dropped (its origin re-sends
  or times out).
* A broadcast is delivered here once per (src, id) -- remembered in a bounded
  LRU of ``max_seen_broadcasts`` -- kept (``max_kept_broadcasts``) and flooded
  to every up link but the one it came from and its src.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..errors import JobError, NoRoute, ProtocolError, Refused
from ..protocol.bodies import ErrorBody, JobRequest, pack_value, unpack_value
from ..protocol.codec import (
    TAG,
    Header,
    HeaderFields,
    decode_header,
    encode_header,
    encode_relayed_header,
)
from ..protocol.frame import Frame
from ..protocol.limits import DEFAULT_TTL
from ..protocol.signature import (
    MAC3_VERSION,
    SIG_VERSION,
    KeyRing,
    SigFrame,
    Signer,
    message_mac3_parts,
    message_signed_bytes,
)
from ..routing.dijkstra import RoutingTable
from .access import Grant
from .context import (
    _BROADCAST,
    _CANCEL,
    _ERROR,
    _JOB,
    _PROGRESS,
    _REPLY,
    _ROUTED,
    BrokerContext,
)
from .peers import PeerLink
from .ports import LegacyHostsView, LinkSender, OriginAnswers, RoutedHere

__all__ = ["HOLD_SECONDS", "MAX_HELD", "MAX_REPLAY_ENTRIES", "REPLAY_WINDOW", "Relay"]

#: A signed message is accepted this many seconds (of wall clock) either side
#: of our clock: the clock-skew tolerance between brokers (docs/security.md).
REPLAY_WINDOW: Final = 300.0

#: Signed messages remembered to refuse a second copy within the window; at
#: 100,000 jobs a minute this covers the window.  When it is full the oldest
#: is forgotten and nothing at or before its timestamp is accepted any more.
MAX_REPLAY_ENTRIES: Final = 500_000

#: Routed messages kept for re-routing after their next hop vanished: one
#: burst of a busy link (its QoS queue is bounded by MAX_LINK_QUEUE too).
MAX_HELD: Final = 10_000
#: A held message older than this (s) is dropped: the routes recompute within
#: about 0.1 s of a link going down; later, the origin's own re-send wins.
HOLD_SECONDS: Final = 2.0


class Relay:
    """Hop-by-hop forwarding by the routing table, and broadcast flooding."""

    def __init__(self, ctx: BrokerContext, *, signer: Signer | None = None,
                 keyring: KeyRing | None = None,
                 serving: Callable[[str], str | None] | None = None,
                 grant_of: Callable[[str], Grant | None] | None = None,
                 mac_verifier: Callable[[str], tuple[str, int] | None] | None = None,
                 mac3: bool = False) -> None:
        self._ctx = ctx
        #: The node that verifies a message for a dst with a pairwise MAC and
        #: the frame version to use (2 or 3), None when it takes none (None:
        #: this node uses no MACs).
        self._mac_verifier = mac_verifier
        #: Whether we take version-3 MACs (revision 10; with MACs only).
        self._mac3 = mac3 and mac_verifier is not None
        #: What this node's trust store grants the client key of a fingerprint.
        self._grant_of = grant_of or (lambda fp: None)
        self._signer = signer
        self._keyring = keyring
        #: The broker serving an SSH host (from its LSA), which signs for it.
        self._serving = serving or (lambda node: None)
        #: (src, type, id, ts) of signed messages accepted, oldest first.
        self._seen_signed: dict[tuple[str, int, str, int], None] = {}
        self._replay_floor = -1  # ts (ms) at or before which nothing is accepted
        self._seen_bc: dict[tuple[str, str], None] = {}
        self.broadcasts: deque[dict[str, Any]] = deque()
        #: Body bytes of the kept broadcasts (bounded by max_kept_broadcast_bytes).
        self._kept_bytes = 0
        self._kept_sizes: deque[int] = deque()  # parallel to broadcasts
        # (held at, routes.computations then, dst, cls, type, frames from the tag on)
        self._held: deque[tuple[float, int, str, int, int, list[Frame]]] = deque()

    def wire(self, links: LinkSender, routes: RoutingTable, remote: RoutedHere,
             origin: OriginAnswers, legacy: LegacyHostsView) -> None:
        self._links = links
        self._routes = routes
        self._remote = remote
        self._origin = origin
        self._legacy = legacy

    def kept_broadcasts(self) -> list[dict[str, Any]]:
        """The broadcasts received lately, oldest first."""
        return list(self.broadcasts)

    # ------------------------------------------------------------- routing
    def sign(self, frames: list[Frame], client: tuple[str, str] | None = None, *,
             direct: bool = False, fields: HeaderFields | None = None) -> list[Frame]:
        """``[tag, header, body]`` with our signature frame added (unchanged
        without a signer).  ``direct``: the next hop is the destination and
        takes our own messages unsigned, so one we originate is not signed.
        ``fields``: the header's fields, the very tuple ``frames[1]`` was
        encoded from (saves decoding it again: a job signs twice at each end)."""
        signer = self._signer
        if signer is None:
            return frames
        t, mid, src, dst, _ttl, ts, cls, corr = (
            fields if fields is not None else decode_header(frames[1]))
        me = self._ctx.node_id
        if direct and src == me:
            if client is None:
                return frames[:3]
            return [frames[0], frames[1], frames[2], SigFrame(None, client).pack()]
        name = None if src == me else me
        verifier = self._mac_verifier
        ring = self._keyring
        if verifier is not None and t != _BROADCAST and ring is not None:
            to = verifier(dst)
            if to is not None:
                node, version = to
                if version == MAC3_VERSION:
                    head, tail = message_mac3_parts(t, mid, src, dst, ts, cls, corr, client,
                                                    frames[2])
                    mac = ring.mac_for(node, head, tail)
                else:
                    mac = ring.mac_for(node, message_signed_bytes(
                        t, mid, src, dst, ts, cls, corr, client, frames[2]))
                if mac is not None:
                    return [frames[0], frames[1], frames[2],
                            SigFrame(mac, client, name, version).pack()]
        data = message_signed_bytes(t, mid, src, dst, ts, cls, corr, client, frames[2])
        return [frames[0], frames[1], frames[2], SigFrame(signer.sign(data), client, name).pack()]

    def verified(self, h: Header, frames: list[Frame],
                 via: str | None = None) -> tuple[str, str] | bool | None:
        """Check the signature and freshness of a message for us: False when
        refused (counted), else the client it was signed for (None if none).
        ``via``: the neighbour it came from; a message straight from its src
        to this node may come unsigned (module docstring)."""
        ring = self._keyring
        if ring is None:
            return None
        ctx = self._ctx
        try:
            sf = SigFrame.unpack(frames[3]) if len(frames) >= 4 else None
        except ProtocolError:
            sf = None
            via = None  # a frame that does not parse is refused, direct or not
        if sf is None or sf.sig is None:
            if via is None or via != h.src or h.dst != ctx.node_id:
                ctx.counters["signatures_refused"] += 1
                ctx.events.append(("security:signature_refused", {"src": h.src, "id": h.id}))
                return False
            if not self._fresh(h):
                return False
            ctx.counters["unsigned_direct"] += 1
            return None if sf is None else sf.client
        signer = h.src if sf.signer is None else sf.signer
        if signer != h.src and self._serving(h.src) != signer:
            ok = False  # only the broker serving an SSH host signs in its name
        elif sf.version == SIG_VERSION:
            ok = ring.verify(signer, sf.sig, message_signed_bytes(
                h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, sf.client, frames[2]))
        elif h.type == _BROADCAST or self._mac_verifier is None:
            # A MAC is for one verifier (us: the message is for this node or
            # a host we serve); never for a broadcast, nor when we use none.
            ok = False
        elif sf.version == MAC3_VERSION:
            head, tail = message_mac3_parts(h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr,
                                            sf.client, frames[2])
            ok = self._mac3 and ring.mac_ok(signer, sf.sig, head, tail)
        else:
            ok = ring.mac_ok(signer, sf.sig, message_signed_bytes(
                h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, sf.client, frames[2]))
        if not ok:
            ctx.counters["signatures_refused"] += 1
            ctx.events.append(("security:signature_refused", {"src": h.src, "id": h.id}))
            return False
        wall_ms = int(ctx.wall() * 1000)
        key = (h.src, h.type, h.id, h.ts)
        if (abs(wall_ms - h.ts) > REPLAY_WINDOW * 1000 or h.ts <= self._replay_floor
                or key in self._seen_signed):
            self._replay_refused(h, wall_ms)
            return False
        if sf.version != SIG_VERSION:
            ctx.counters["pairwise_macs"] += 1
        if h.type == _PROGRESS:
            return sf.client  # output chunks share id and ms: the window is their check
        seen = self._seen_signed
        seen[key] = None
        cutoff = wall_ms - int(REPLAY_WINDOW * 1000)
        while seen:
            first = next(iter(seen))
            if first[3] >= cutoff and len(seen) <= MAX_REPLAY_ENTRIES:
                break
            del seen[first]
            if first[3] >= cutoff:
                self._replay_floor = max(self._replay_floor, first[3])
        return sf.client

    def _fresh(self, h: Header) -> bool:
        """Is ``ts`` within the window of our clock?  (Counted when not.)"""
        wall_ms = int(self._ctx.wall() * 1000)
        if abs(wall_ms - h.ts) <= REPLAY_WINDOW * 1000:
            return True
        self._replay_refused(h, wall_ms)
        return False

    def _replay_refused(self, h: Header, wall_ms: int) -> None:
        ctx = self._ctx
        ctx.counters["replays_refused"] += 1
        ctx.events.append(("security:replay_refused", {
            "src": h.src, "id": h.id, "skew_s": round((wall_ms - h.ts) / 1000, 3)}))

    def _client_may_run(self, h: Header, frames: list[Frame],
                        client: tuple[str, str] | bool | None) -> JobRequest | bool:
        """The executing node's own check of a signed JOB's client: a JOB must
        name one, and a client key this node's trust store knows must be
        allowed the tool and this node here too (else routed ERROR refused).
        False: refused; else the body it decoded (as an envelope), or True."""
        if not isinstance(client, tuple):
            self.route_error(h.src, h.id, h.cls, Refused(
                "a routed JOB must carry its client's key fingerprint and role", job_id=h.id))
            return False
        grant = self._grant_of(client[0])
        if grant is None:
            return True  # a key only its entry broker knows: that broker checked it
        try:
            # An envelope: a big body's arguments are not built in the loop.
            req = JobRequest.unpack(frames[2], envelope=True)
        except ProtocolError:
            return True  # answered bad_request where it is run
        refusal = grant.tool_refusal(req.tool) or grant.node_refusal(h.dst)
        if refusal is not None:
            self.route_error(h.src, h.id, h.cls, Refused(refusal, job_id=h.id))
            return False
        return req

    def originate(self, fields: HeaderFields, payload: list[Frame], *,
                  client: tuple[str, str] | None = None) -> bool:
        """Send a routed message of ours toward its dst (``fields``: its
        header, encoded here; ``payload``: the body and what follows it),
        signed from ``fields`` (no header decoded again: a job signs twice at
        each end); as :meth:`send_to_node` otherwise."""
        return self._route(fields[3], fields[6], [TAG, encode_header(fields), *payload],
                           fields[0], client, True, fields)

    def send_to_node(self, dst: str, cls: int, frames: list[Frame], t: int, *,
                     client: tuple[str, str] | None = None, sign: bool = True) -> bool:
        """Send routed frames toward ``dst`` by its next hop; False if unreachable.
        Frames we originate (``sign``) are signed, for ``client`` when given
        (unsigned but for the client frame when the next hop is the
        destination over a link that said ``direct``).

        A next hop whose link is gone or down (it just went: our LSA and the
        routes will follow within an LSA interval and an SPF run) holds the
        message until the routes were recomputed."""
        return self._route(dst, cls, frames, t, client, sign, None)

    def _route(self, dst: str, cls: int, frames: list[Frame], t: int,
               client: tuple[str, str] | None, sign: bool,
               fields: HeaderFields | None) -> bool:
        nh = self._routes.next_hop(dst)
        link = self._links.get(nh) if nh is not None else None
        if sign and self._signer is not None:
            direct = link is not None and link.up and nh == dst and link.direct
            frames = self.sign(frames[:3], client, direct=direct, fields=fields)
        if nh is not None and (link is None or not link.up) and t in _ROUTED:
            self.hold(cls, frames, self._ctx.now)
            return True
        if link is None or not self._links.send(link, cls, frames):
            self._ctx.counters["no_route"] += 1
            return False
        return True

    def hold(self, cls: int, frames: list[Frame], now: float) -> None:
        """``frames`` (tag, header, body...) were lost to a neighbour whose
        connection is gone: send them again once the routes are recomputed."""
        if len(frames) < 2:
            return
        try:
            h = decode_header(frames[1])
        except ProtocolError:
            return
        if h.type not in _ROUTED or h.dst == self._ctx.node_id:
            return  # session traffic and LSAs are the link's own business
        if len(self._held) >= MAX_HELD:
            self._ctx.counters["held_dropped"] += 1
            return
        self._held.append((now, self._routes.computations, h.dst, cls, h.type, frames))

    def release_held(self, now: float) -> None:
        """Re-send held messages whose routes were recomputed since; drop old ones."""
        held = self._held
        if not held:
            return
        computed = self._routes.computations
        keep: deque[tuple[float, int, str, int, int, list[Frame]]] = deque()
        counters = self._ctx.counters
        while held:
            item = held.popleft()
            at, version, dst, cls, t, frames = item
            if at + HOLD_SECONDS <= now:
                counters["held_dropped"] += 1
            elif version == computed:
                keep.append(item)
            elif self.send_to_node(dst, cls, frames, t, sign=False):
                counters["held_resent"] += 1
            else:
                counters["held_dropped"] += 1
        self._held = keep

    def next_deadline(self, t: float) -> float:
        """When the oldest held message is dropped (poll() re-sends the others)."""
        if self._held:
            t = min(t, self._held[0][0] + HOLD_SECONDS)
        return t

    def route_error(self, dst: str, mid: str, cls: int, err: JobError,
                    src: str | None = None) -> None:
        """Send ERROR toward ``dst``; ``src`` is the node answering (a legacy
        host we serve answers in its own name)."""
        ctx = self._ctx
        body = ErrorBody(err.code, err.message, err.remote_type, err.node or ctx.node_id,
                         err.details).pack()
        self.originate((_ERROR, mid, src or ctx.node_id, dst, DEFAULT_TTL,
                        int(ctx.wall() * 1000), cls, None), [body])

    def on_routed(self, link: PeerLink, h: Header, frames: list[Frame], now: float) -> None:
        """A JOB/RESULT/ERROR/PROGRESS/CANCEL from a neighbour: ours, or relay it."""
        ctx = self._ctx
        req: JobRequest | None = None
        if (h.dst == ctx.node_id or h.dst in self._legacy) and self._keyring is not None:
            client = self.verified(h, frames, link.node)
            if client is False:
                return
            frames = frames[:3]
            if h.type == _JOB:
                may = self._client_may_run(h, frames, client)
                if may is False:
                    return
                req = may if isinstance(may, JobRequest) else None
        if h.dst == ctx.node_id:
            t = h.type
            if t in (_JOB, _CANCEL):
                self._remote.deliver(h, frames, now, req)
            else:
                # RESULT / ERROR / PROGRESS of a job we placed for a local client
                self._origin.reply(h.id, t, frames, now, h.src)
            return
        if h.dst in self._legacy:
            self._legacy.deliver(h, frames, now)
            return
        if h.ttl <= 1:
            ctx.counters["ttl_expired"] += 1
            if h.type == _JOB and h.src:
                self.route_error(h.src, h.id, h.cls, NoRoute(
                    f"message for '{h.dst}' ran out of hops (TTL) at '{ctx.node_id}'",
                    job_id=h.id, node=ctx.node_id))
            return
        header = encode_relayed_header(h)
        if self.send_to_node(h.dst, h.cls, [TAG, header, *frames[2:]], h.type, sign=False):
            ctx.counters["relayed"] += 1
            return
        # Only a JOB is answered: an ERROR for a lost CANCEL would read as the
        # failure of the job's current attempt.
        if h.type == _JOB and h.src:
            self.route_error(h.src, h.id, h.cls, NoRoute(
                f"no route from '{ctx.node_id}' to node '{h.dst}'", job_id=h.id,
                node=ctx.node_id))

    # ------------------------------------------------------------ broadcast
    def on_client_broadcast(self, cls: int, rid: bytes, h: Header, body: Frame,
                            now: float) -> None:
        """A client's BROADCAST: flood it, answer how many neighbours it reached."""
        ctx = self._ctx
        bh = Header(_BROADCAST, h.id, ctx.node_id, "", DEFAULT_TTL, int(ctx.wall() * 1000),
                    cls, None)
        reached = self.on_broadcast(None, bh, self.sign([TAG, encode_header(bh), body], fields=bh),
                                    now)
        ctx.out.append((cls, [rid, TAG, ctx.header(_REPLY, h.id, h.src, cls, h.id),
                              pack_value({"id": h.id, "neighbours": reached})]))

    def on_broadcast(self, from_node: str | None, h: Header, frames: list[Frame],
                     now: float) -> int:
        """Deliver a broadcast here once and flood it on; returns links sent to."""
        ctx = self._ctx
        key = (h.src, h.id)
        if key in self._seen_bc:
            return 0
        if (from_node is not None and self._keyring is not None
                and self.verified(h, frames) is False):
            return 0  # forged or altered: neither delivered nor flooded
        self._seen_bc[key] = None
        while len(self._seen_bc) > ctx.limits.max_seen_broadcasts:
            del self._seen_bc[next(iter(self._seen_bc))]
        ctx.counters["broadcasts_received"] += 1
        body = frames[2]
        size = len(body)
        limits = ctx.limits
        data = None
        kept = 0
        # A big body is neither decoded in the loop nor kept: the record says
        # its size, with data nil (docs/protocol.md 10.1).
        if size <= limits.max_kept_broadcast_bytes // 16:
            try:
                data = unpack_value(body)
                kept = size
            except ProtocolError:
                data = None
        record = {"id": h.id, "src": h.src, "via": from_node, "data": data, "size": size}
        kept_q = self.broadcasts
        sizes = self._kept_sizes
        kept_q.append(record)
        sizes.append(kept)
        self._kept_bytes += kept
        while kept_q and (len(kept_q) > limits.max_kept_broadcasts
                          or self._kept_bytes > limits.max_kept_broadcast_bytes):
            kept_q.popleft()
            self._kept_bytes -= sizes.popleft()
        ctx.events.append(("message", record))
        if h.ttl <= 1:
            return 0
        header = encode_relayed_header(h)
        sent = 0
        send = self._links.send
        for link in self._links.up_links():
            if (link.node != from_node and link.node != h.src
                    and send(link, h.cls, [TAG, header, *frames[2:]])):
                sent += 1
        return sent
