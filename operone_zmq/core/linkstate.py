"""Link state of a broker: our LSAs, flooding, SPF scheduling (no I/O).

The database itself (:class:`~operone_zmq.routing.lsdb.LinkStateDB`) and the
shortest paths (:class:`~operone_zmq.routing.dijkstra.RoutingTable`) live in
:mod:`operone_zmq.routing`; this part decides when to originate, what to
flood to whom, and when to react to a changed topology.

Rules:

* Our LSA (links with their cost bands, tools, caps, load, workers) and one
  LSA per legacy host we serve are originated when a change is requested, as
  :class:`~operone_zmq.routing.damping.LsaPacer` allows: *urgent* changes (a
  worker or link came or went, a legacy host was added, a stale copy of ours
  was seen, the refresh is due) at most once per
  :data:`~operone_zmq.routing.damping.URGENT_LS_INTERVAL` (50 ms), others (a
  link's cost band moved, our load moved by more than :data:`LOAD_CHANGE`) at
  most once per :data:`~operone_zmq.routing.damping.MIN_LS_INTERVAL` (5 s,
  OSPF's MinLSInterval).  Changes requested meanwhile go out in one LSA.
* LSAs from a neighbour are accepted in one place, :meth:`LinkState.on_lsa`
  (the place to verify their signatures): newer ones are installed and
  flooded to every other up link; a sender that is behind gets our newer
  copies back.  A new neighbour gets our whole database.
* With a key ring (the trust store's signing keys), every LSA is verified
  before it is stored or flooded: a broker's LSA must carry its origin's
  signature, an SSH host's that of the one broker it links to (and the
  host's name must not be a node of the trust store); anything else is
  dropped and counted (``lsas_unverified``).  An LSA's ``features`` (our
  own: ``mac`` and ``mac3``, we verify pairwise MACs of versions 2 and 3)
  count only under its ``xsig``; without a valid one the LSA is taken
  without them.  Each broker may advertise at most
  :data:`MAX_SSH_HOSTS_PER_BROKER` SSH hosts.  Our own LSAs are signed
  as they are originated; an origination that fails (the sequence space ran
  out, the database is full) is logged and counted, never raised.
* Routes are recomputed (SPF) as :class:`~operone_zmq.routing.damping.
  SpfThrottle` allows: 50 ms after the first change, then with a hold that
  doubles under sustained churn up to 2 s; a change of adjacency (a node or
  link appeared or went) always runs after 50 ms.  Each run is followed by
  the reaction to it: the origin table fails or re-sends attempts whose
  target or path became unreachable.
* Partitions: :class:`~operone_zmq.routing.topology.PartitionTracker` over
  every node the database *knows* (stored or retired: a dead node stays
  known, "down since T", for ``down_retention`` s).  ``partition:detected``
  names the nodes unreachable for :data:`PARTITION_HOLD`; a heal is only
  reported when every known node is reachable again; nodes dropped after
  the retention time are ``partition:forgotten``, not healed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from ..errors import ProtocolError
from ..protocol.bodies import MAX_LSAS_PER_MESSAGE, pack_lsas, unpack_lsas
from ..protocol.codec import TAG
from ..protocol.frame import Frame
from ..protocol.signature import (
    FEATURE_MAC,
    FEATURE_MAC3,
    KeyRing,
    Signer,
    lsa_ext_signed_bytes,
    lsa_signed_bytes,
)
from ..routing.damping import SPF_START, URGENT_LS_INTERVAL, LsaPacer, SpfThrottle
from ..routing.dijkstra import RoutingTable
from ..routing.events import Event
from ..routing.lsa import LSA, LinkInfo
from ..routing.lsdb import LinkStateDB, initial_seq
from ..routing.topology import NetworkTopology, PartitionTracker
from .context import _LSA, BrokerContext
from .peers import PeerLink
from .ports import Advertiser, LegacyHostsView, LinkAdverts, TopologyWatcher

__all__ = ["LOAD_CHANGE", "LSA_MIN_INTERVAL", "MAX_INCARNATIONS", "MAX_SSH_HOSTS_PER_BROKER",
           "PARTITION_HOLD", "SPF_DELAY", "LinkState"]

#: Nodes whose incarnation (broker run) we remember: as many as a link-state
#: database holds origins by default, so every node we route to is covered;
#: the oldest entry goes first past it.
MAX_INCARNATIONS: Final = 100_000

#: Seconds between a topology change and our reaction to it (events, failing
#: jobs to nodes that became unreachable) after a quiet period: batches a
#: burst of LSAs (SpfThrottle's start delay).
SPF_DELAY: Final = SPF_START

#: A split of the link-state graph must last this long (s) to be reported as a
#: partition: links coming up are briefly one-sided.
PARTITION_HOLD: Final = 1.0

#: Change of our load (busy fraction of worker slots) that is worth a new LSA.
LOAD_CHANGE: Final = 0.2

#: SSH hosts one broker may advertise (each is an LSA signed by it): far above
#: a real site's legacy hosts, and it bounds the database share one trusted
#: but hostile broker can take.
MAX_SSH_HOSTS_PER_BROKER: Final = 256

#: At most one LSA of ours per this many seconds for urgent changes: a burst
#: of link changes is advertised once (non-urgent ones: MIN_LS_INTERVAL).
LSA_MIN_INTERVAL: Final = URGENT_LS_INTERVAL


class LinkState:
    """Origination, flooding and the reaction to topology changes."""

    def __init__(self, ctx: BrokerContext, wall: Callable[[], float], *,
                 signer: Signer | None = None, keyring: KeyRing | None = None,
                 pairwise_macs: bool = True, mac3: bool = True) -> None:
        self._ctx = ctx
        self._wall = wall
        self.lsdb = LinkStateDB(ctx.node_id, initial_seq(wall()),
                                retention=ctx.limits.down_retention)
        self._keyring = keyring
        if signer is not None:
            me = ctx.node_id
            features: tuple[str, ...] = (
                ((FEATURE_MAC, FEATURE_MAC3) if mac3 else (FEATURE_MAC,)) if pairwise_macs
                else ())

            def seal(lsa: LSA) -> LSA:
                if lsa.origin == me and features:
                    lsa = replace(lsa, features=features)
                    wire = lsa.to_wire()
                    return replace(lsa, sig=signer.sign(lsa_signed_bytes(wire)),
                                   xsig=signer.sign(lsa_ext_signed_bytes(wire)))
                return replace(lsa, sig=signer.sign(lsa_signed_bytes(lsa.to_wire())))
            self.lsdb.seal = seal
        self.routes = RoutingTable(self.lsdb, auto=False)
        self.pacer = LsaPacer()
        self.pacer.request(ctx.now, urgent=True)
        self.spf = SpfThrottle()
        self._adj_seen = -1
        #: Known nodes that are unreachable, since when (shared with the topology view).
        self.tracker = PartitionTracker(ctx.node_id, hold=PARTITION_HOLD)
        #: The original's NetworkTopology API, as a view of our link-state database.
        self.topology = NetworkTopology(ctx.node_id, clock=lambda: ctx.now, lsdb=self.lsdb)
        self.topology.partitions = self.tracker
        self._advertised_load = 0.0
        #: node -> the incarnation last seen in its HELLO/WELCOME or LSA.
        self._incarnations: dict[str, int] = {}

    def wire(self, links: LinkAdverts, workers: Advertiser, legacy: LegacyHostsView,
             origin: TopologyWatcher) -> None:
        self._links = links
        self._workers = workers
        self._legacy = legacy
        self._origin = origin

    @property
    def dirty(self) -> bool:
        """Whether a change waits to be advertised."""
        return self.pacer.pending

    def mark_dirty(self, urgent: bool = True) -> None:
        """What we advertise changed: originate a new LSA as the pacer allows
        (``urgent``: adjacency, workers, tools; else a cost band or load)."""
        self.pacer.request(self._ctx.now, urgent=urgent)

    # ----------------------------------------------------------- origination
    def _our_links(self) -> list[LinkInfo]:
        out = [LinkInfo(name, 1.0) for name in self._legacy.names()]
        for node, cost in self._links.advertise_costs():
            out.append(LinkInfo(node, round(cost, 3), loss=self._links.link_loss(node)))
        return out

    def _originate(self, now: float) -> None:
        ctx = self._ctx
        workers = self._workers
        self.pacer.sent(now)
        running, slots = workers.load()
        load = round(running / slots, 3) if slots else 0.0
        self._advertised_load = load
        wire = []
        try:
            lsa = self.lsdb.originate(
                self._our_links(), workers.tools(), workers.caps(), load, workers.worker_count(),
                now, public_key=ctx.public_key, name=ctx.name,
                incarnation=ctx.incarnation)
            wire.append(lsa.to_wire())
        except ProtocolError as exc:
            self._origination_failed(ctx.node_id, exc)
        for name, lg_load, lg_slots in self._legacy.loads():
            try:
                llsa = self.lsdb.originate(
                    [LinkInfo(ctx.node_id, 1.0)], self._legacy.tools, ("ssh",),
                    lg_load, lg_slots, now, origin=name,
                    kind="ssh", name=f"{name} (ssh via {ctx.node_id})",
                    incarnation=ctx.incarnation)
            except ProtocolError as exc:
                self._origination_failed(name, exc)
                continue
            wire.append(llsa.to_wire())
        if wire:
            self._flood(wire, None)

    def _origination_failed(self, origin: str, exc: ProtocolError) -> None:
        ctx = self._ctx
        ctx.counters["lsa_origination_failed"] += 1
        ctx.events.append(("lsa:origination_failed", {"origin": origin, "error": str(exc)}))

    def _verified(self, lsa: LSA) -> LSA | None:
        """``lsa`` if signed by whoever may author it (see the rules above),
        without its features unless its ``xsig`` covers them; else None."""
        ring = self._keyring
        if ring is None:
            return lsa
        if lsa.kind == "ssh":
            if len(lsa.links) != 1 or (ring.knows(lsa.origin)
                                       and lsa.origin not in self.lsdb.owned):
                return None
            signer = lsa.links[0].neighbor
            cur = self.lsdb.get(lsa.origin)
            if cur is None and sum(
                    1 for x in self.lsdb.lsas() if x.kind == "ssh" and x.links
                    and x.links[0].neighbor == signer) >= MAX_SSH_HOSTS_PER_BROKER:
                return None
        else:
            signer = lsa.origin
        # A copy of one of ours (from our previous run: the database then
        # raises our seq past it) is verified with our own key like any other.
        wire = lsa.to_wire()
        if lsa.features:
            # One verify either way: the xsig covers every field the sig does.
            if lsa.xsig and ring.verify(signer, lsa.xsig, lsa_ext_signed_bytes(wire)):
                return lsa
            # Features no signature covers (added or altered on the way, or
            # a copy that lost its xsig): the LSA counts, the features do not.
            lsa = replace(lsa, features=(), xsig=b"")
        if lsa.sig and ring.verify(signer, lsa.sig, lsa_signed_bytes(wire)):
            return lsa
        return None

    # -------------------------------------------------------------- flooding
    def _flood(self, wire: list[dict[str, Any]], except_node: str | None) -> None:
        for link in self._links.up_links():
            if link.node != except_node:
                self._send_lsas(link, wire)

    def _send_lsas(self, link: PeerLink, wire: list[dict[str, Any]]) -> None:
        ctx = self._ctx
        for i in range(0, len(wire), MAX_LSAS_PER_MESSAGE):
            chunk = wire[i:i + MAX_LSAS_PER_MESSAGE]
            if self._links.send(link, 0, [TAG, ctx.header(_LSA, ctx.next_id(), link.node, 0),
                                          pack_lsas(chunk)]):
                ctx.counters["lsas_sent"] += len(chunk)

    def send_database(self, link: PeerLink) -> None:
        """Database exchange: ``link``'s neighbour gets everything we know."""
        self._send_lsas(link, [lsa.to_wire() for lsa in self.lsdb.lsas()])

    def link_up(self, link: PeerLink) -> None:
        """A link came up: it is in our next LSA, and it gets our database."""
        self.mark_dirty()
        self.send_database(link)

    def on_lsa(self, link: PeerLink, body: Frame, now: float) -> None:
        """LSAs from neighbour ``link``: the one place an LSA is accepted."""
        ctx = self._ctx
        try:
            raw = unpack_lsas(body)
        except ProtocolError:
            ctx.counters["malformed"] += 1
            return
        ctx.counters["lsas_received"] += len(raw)
        lsas = []
        newer: list[dict[str, Any]] = []
        get = self.lsdb.get
        for x in raw:
            # Most flooded LSAs are copies we already hold: compare the seq
            # before paying for full validation.
            if type(x) is dict and type(origin := x.get("origin")) is str:
                # (Anything else as origin is refused by from_wire below; a
                # list here raised TypeError, and the whole message was lost.)
                cur = get(origin)
                seq = x.get("seq")
                if cur is not None and type(seq) is int and seq <= cur.seq:
                    if seq < cur.seq:
                        newer.append(cur.to_wire())  # the sender is behind
                    continue
            try:
                lsa = LSA.from_wire(x)
            except ProtocolError:
                ctx.counters["malformed"] += 1
                continue
            checked = self._verified(lsa)
            if checked is not None:
                lsas.append(checked)
            else:
                ctx.counters["lsas_unverified"] += 1
                ctx.events.append(("security:lsa_unverified",
                                   {"origin": lsa.origin, "from": link.node}))
        result = self.lsdb.install_many(lsas, now, link.node)
        if result.accepted:
            self._flood([x.to_wire() for x in result.accepted], link.node)
            for x in result.accepted:
                if x.incarnation:
                    self.incarnation_seen(x.origin, x.incarnation, now)
        newer += [cur.to_wire() for x in result.older
                  if (cur := self.lsdb.get(x.origin)) is not None]
        if newer:
            self._send_lsas(link, newer)
        if self.lsdb.needs_reorigination:
            self.mark_dirty()

    # ---------------------------------------------------------- incarnations
    def incarnation_of(self, node: str) -> int:
        """The incarnation last seen of ``node`` (0: not known)."""
        return self._incarnations.get(node, 0)

    def incarnation_seen(self, node: str, incarnation: int, now: float) -> None:
        """``node`` said (HELLO, WELCOME) or advertised (a newer LSA) that it
        runs as ``incarnation``; a different one than before means it
        restarted: what it ran before is gone (the origin table re-places it)."""
        if not incarnation or node == self._ctx.node_id:
            return
        known = self._incarnations
        old = known.pop(node, None)
        known[node] = incarnation  # (re)inserted last: the dict is oldest-first
        if len(known) > MAX_INCARNATIONS:
            del known[next(iter(known))]
        if old is not None and old != incarnation:
            ctx = self._ctx
            ctx.counters["peer_restarts"] += 1
            ctx.events.append(("peer:restarted", {"node": node}))
            self._origin.node_restarted(node, incarnation, now)

    # ------------------------------------------------------- SPF scheduling
    def poll(self, now: float) -> None:
        """Originate our LSA if it changed; rerun SPF and react when due."""
        if self.pacer.due(now):
            self._originate(now)
        routes = self.routes
        if routes.stale:
            adj = self.lsdb.adjacency_version
            self.spf.trigger(now, urgent=adj != self._adj_seen)
            self._adj_seen = adj
        if self.spf.due(now):
            self.spf.ran(now)
            routes.recompute()
            self._on_topology_changed(now)

    def _on_topology_changed(self, now: float) -> None:
        ctx = self._ctx
        reachable = self.routes.reachable()
        ctx.events.append(("topology:updated", {"nodes": len(reachable) + 1}))
        self._update_partitions(now, reachable)
        self._origin.topology_changed(reachable, now, self._link_up)

    def _link_up(self, node: str) -> bool:
        link = self._links.get(node)
        return link is not None and link.up

    def _update_partitions(self, now: float, reachable: set[str]) -> None:
        """Partition events from the known nodes that are not reachable."""
        components = self.routes.graph.components() if len(self.lsdb) else None
        for ev in self.tracker.update(now, self.lsdb.known_origins(), reachable,
                                      components=components):
            self._ctx.events.append((ev.name, self._wall_times(ev, now)))

    def _wall_times(self, ev: Event, now: float) -> dict[str, Any]:
        """The event's payload with ``down_since`` as wall-clock seconds (the
        tracker keeps monotonic ones; an operator reads dates)."""
        data = dict(ev.data)
        since = data.get("down_since")
        if isinstance(since, dict):
            wall = self._wall()
            data["down_since"] = {n: round(wall - (now - t), 3) for n, t in since.items()}
        return data

    def down_since(self, node: str) -> float | None:
        """Wall-clock time since which known ``node`` is unreachable, or None."""
        t = self.tracker.down_since(node)
        if t is None:
            return None
        return round(self._wall() - (self._ctx.now - t), 3)

    def tick(self, now: float) -> None:
        """Age the database; schedule refreshes."""
        if self.lsdb.expire(now):
            pass  # topology_version moved: poll() reruns SPF and reacts
        if self.lsdb.refresh_due(now):
            self.mark_dirty()

    def check_load(self, now: float, next_ping: float) -> None:
        """Advertise our load when it moved noticeably, at most once a heartbeat
        interval (placement elsewhere weighs it; a stale burst must not stick)."""
        workers = self._workers
        if now >= next_ping - self._ctx.limits.peer_interval / 2 and workers.worker_count():
            running, slots = workers.load()
            load = running / slots if slots else 0.0
            if abs(load - self._advertised_load) > LOAD_CHANGE:
                self.mark_dirty(urgent=False)

    def check_partition(self, now: float) -> None:
        """Report nodes that stayed unreachable for :data:`PARTITION_HOLD`, and
        nodes the database forgot (retention over), between SPF runs."""
        due = self.tracker.next_deadline()
        if (due is not None and now >= due) or self._forgot_any():
            self._update_partitions(now, self.routes.reachable())

    def _forgot_any(self) -> bool:
        """Whether a node the tracker holds as down is no longer known."""
        knows = self.lsdb.knows
        return any(not knows(n) for n in self.tracker.down)

    def next_deadline(self, t: float) -> float:
        """The earlier of ``t`` and when :meth:`poll`/:meth:`tick` is next due."""
        for at in (self.spf.next_deadline(), self.tracker.next_deadline(),
                   self.pacer.next_deadline(), self.lsdb.next_deadline()):
            if at is not None and at < t:
                t = at
        return t

    # --------------------------------------------------------------- views
    def route_info(self, dest: str) -> dict[str, Any]:
        """The route to ``dest`` as ``operone route`` shows it (NetworkTopology)."""
        if dest == self._ctx.node_id:
            return {"destination": dest, "reachable": True, "path": [dest], "hops": 0,
                    "next_hop": None, "total_latency": 0.0, "bandwidth": 0.0,
                    "reliability": 1.0}
        r = self.topology.find_route(dest)
        if r is None:
            known = self.lsdb.knows(dest)
            out: dict[str, Any] = {"destination": dest, "reachable": False, "known": known}
            if known:
                out["down_since"] = self.down_since(dest)
            return out
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
