"""``NetworkTopology``: the original package's topology API over link-state data.

The TypeScript original offered ``discoverPeers``, ``addPeer``,
``findRoute``, ``getNetworkStats`` and ``getTopologyGraph``, but only ever
knew its direct neighbours (so partitions were always 1 and multi-hop routes
never left the first hop).  Here the same methods, in snake_case, answer
from the whole link-state database.  Rules:

* **Nodes** are the origins of the LSAs in the database, the local node,
  and the peers registered with :meth:`NetworkTopology.add_peer`.
* **Links** follow the graph rules of :mod:`operone_zmq.routing.dijkstra`
  (both ends must advertise a link; cost is the larger RTT).  One
  exception: a direct peer registered with ``add_peer`` is linked to the
  local node at once, with the peer's measured latency, because the local
  session with it is itself proof that the link works both ways.  (Other
  nodes only count that link once both LSAs say so.)
* **Routes** (:meth:`NetworkTopology.find_route`) are the deterministic
  shortest paths of :func:`~operone_zmq.routing.dijkstra.shortest_paths`:
  ``total_latency`` is the sum of link costs in ms, ``bandwidth`` the
  bottleneck (the minimum along the path, so one link of unknown bandwidth,
  0, makes the whole path's unknown), ``reliability`` the product of
  ``1 - loss`` along the path.  There is no route to the local node itself.
* **Statistics** (:meth:`NetworkTopology.get_network_stats`): ``total_nodes``
  counts every known node (local included, unreachable ones too);
  ``direct_connections`` the local node's links (neighbours, even if a
  cheaper path through others exists); ``indirect_connections`` the other
  reachable nodes; averages (hops, route latency) are over reachable nodes;
  ``partitions`` is the number of connected components of the whole graph
  (an isolated node counts as one); ``network_diameter`` is the largest hop
  count of any shortest path between two nodes of the same component.
  The diameter is exact (one Dijkstra per node) up to
  :data:`DIAMETER_EXACT_MAX_NODES` nodes; above that it is the best of
  :data:`DIAMETER_SWEEPS` repeated "farthest node" sweeps per component, a
  lower bound that is exact on trees and usually on meshes
  (``diameter_exact`` says which).  Everything is computed once per
  topology version and cached.
* **Nodes that went away** stay known: an origin whose LSA expired is
  *retired* by the database (see :mod:`operone_zmq.routing.lsdb`) and
  remains a node of the graph, unreachable and without links, with the
  time it was first seen unreachable (``PeerInfo.down_since``,
  ``"down_since"`` in the graph export), until the retention time passes.
* **Events** (see :mod:`operone_zmq.routing.events`): ``topology:updated``
  after any change made through this object (``update_topology``,
  ``add_peer``, ``remove_peer``, ``expire``); partition events decided by
  :class:`PartitionTracker` from which known nodes are unreachable:
  ``partition:detected`` when known nodes become unreachable (naming
  them; again when more do), ``partition:rejoined`` when some come back,
  ``partition:healed`` only when every node still known is reachable
  again, ``partition:forgotten`` when unreachable nodes are dropped after
  the retention time (never a heal).
  :meth:`NetworkTopology.check_partitions` both emits and returns them.

No I/O.  Time comes from the injected ``clock`` (monotonic seconds).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any, Final

from operone_zmq.routing.dijkstra import Graph, PathInfo, _dijkstra, shortest_paths
from operone_zmq.routing.events import (
    PARTITION_DETECTED,
    PARTITION_FORGOTTEN,
    PARTITION_HEALED,
    PARTITION_REJOINED,
    Event,
    EventEmitter,
)
from operone_zmq.routing.lsa import LSA
from operone_zmq.routing.lsdb import LinkStateDB

__all__ = [
    "DIAMETER_EXACT_MAX_NODES",
    "DIAMETER_SWEEPS",
    "MAX_DIRECT_PEERS",
    "NetworkStats",
    "NetworkTopology",
    "PartitionTracker",
    "PeerInfo",
    "RouteInfo",
    "TopologyGraph",
]

#: Largest graph whose diameter is computed exactly: one Dijkstra per node,
#: about 9 ms at 100 nodes on the reference machine (20 ms at 150, growing
#: with the square).  The original's stress test used 50 brokers; bigger
#: meshes get the sweep estimate, so a stats call never stalls a broker's
#: event loop for long.
DIAMETER_EXACT_MAX_NODES: Final = 100

#: Farthest-node sweeps per component when the diameter is estimated.  Each
#: is one Dijkstra; four gives the exact value on almost all meshes tried.
DIAMETER_SWEEPS: Final = 4

#: Direct peers one topology accepts; a broker links to a handful, and this
#: matches the bound on links in one LSA.
MAX_DIRECT_PEERS: Final = 4096


def _monotonic() -> float:
    """Default clock: ``time.monotonic`` (imported here: routing/ imports no time module)."""
    import time

    return time.monotonic()


@dataclass(frozen=True)
class PeerInfo:
    """What we know about one node, direct neighbour or not."""

    id: str
    name: str = ""
    address: str = ""
    capabilities: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    #: Round-trip latency in ms (for a direct peer: measured; otherwise: route cost).
    latency: float = 0.0
    #: Bandwidth in MB/s (0 = unknown); for indirect nodes, the path bottleneck.
    bandwidth: float = 0.0
    #: Monotonic time the node was last heard of (0 = never directly).
    last_seen: float = 0.0
    #: Packet loss fraction 0..1 measured on a direct link.
    loss: float = 0.0
    #: ``"broker"`` or ``"ssh"``.
    kind: str = "broker"
    #: Monotonic time the node was first seen unreachable (None: reachable or never lost).
    down_since: float | None = None


@dataclass(frozen=True)
class RouteInfo:
    """A route from the local node to ``destination``."""

    destination: str
    #: Every node on the path, the local node first and the destination last.
    path: tuple[str, ...]
    next_hop: str
    hop_count: int
    #: Sum of the link costs along the path, ms.
    total_latency: float
    #: Bottleneck bandwidth, MB/s (0 = unknown somewhere on the path).
    bandwidth: float
    #: Product of (1 - loss) along the path, 0..1.
    reliability: float

    @property
    def hops(self) -> list[str]:
        """The nodes the message visits after leaving us (the path without the local node)."""
        return list(self.path[1:])


@dataclass(frozen=True)
class NetworkStats:
    """Whole-mesh statistics, as the original's ``getNetworkStats()`` returned."""

    total_nodes: int
    direct_connections: int
    indirect_connections: int
    average_hop_count: float
    average_latency: float
    network_diameter: int
    partitions: int
    #: Known nodes we cannot reach (in another partition).
    unreachable_nodes: int = 0
    #: Whether ``network_diameter`` is exact or the sweep estimate (a lower bound).
    diameter_exact: bool = True


@dataclass(frozen=True)
class TopologyGraph:
    """Nodes and edges for visualisation, exportable as JSON or Graphviz DOT."""

    local_id: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"local": ..., "nodes": [...], "edges": [...]}``."""
        return {"local": self.local_id, "nodes": self.nodes, "edges": self.edges}

    def to_json(self, indent: int | None = 2) -> str:
        """Return the graph as JSON (keys sorted, so equal graphs give equal text)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def to_dot(self) -> str:
        """Return the graph in Graphviz DOT: SSH hosts as boxes, the local node bold,
        unreachable nodes dashed, edges labelled with their latency."""
        lines = ['graph "operone" {', "  node [shape=ellipse];"]
        for node in self.nodes:
            attrs = [f"label={_dot_quote(_node_label(node))}"]
            if node.get("kind") == "ssh":
                attrs.append("shape=box")
            if node["id"] == self.local_id:
                attrs.append("style=bold")
            elif not node.get("reachable", True):
                attrs.append("style=dashed")
            lines.append(f"  {_dot_quote(node['id'])} [{', '.join(attrs)}];")
        for edge in self.edges:
            label = f"{edge['latency']:.2f} ms"
            if edge.get("bandwidth"):
                label += f", {edge['bandwidth']:g} MB/s"
            lines.append(
                f"  {_dot_quote(edge['source'])} -- {_dot_quote(edge['target'])} "
                f"[label={_dot_quote(label)}];"
            )
        lines.append("}")
        return "\n".join(lines) + "\n"


def _node_label(node: dict[str, Any]) -> str:
    name = node.get("name") or ""
    return f"{node['id']} ({name})" if name and name != node["id"] else str(node["id"])


def _dot_quote(text: str) -> str:
    """Quote a DOT id: backslashes and double quotes escaped, newlines removed."""
    cleaned = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{cleaned}"'


class _View:
    """Everything derived from one version of the topology (cached together)."""

    __slots__ = ("components", "diameter", "graph", "paths")

    def __init__(self, graph: Graph, paths: dict[str, PathInfo]) -> None:
        self.graph = graph
        self.paths = paths
        self.components: list[list[str]] | None = None
        self.diameter: tuple[int, bool] | None = None


class NetworkTopology(EventEmitter):
    """The mesh as seen from ``local_id``: routes, statistics, graph export, partition events."""

    def __init__(
        self,
        local_id: str,
        clock: Callable[[], float] = _monotonic,
        *,
        lsdb: LinkStateDB | None = None,
    ) -> None:
        super().__init__()
        if lsdb is not None and lsdb.self_id != local_id:
            raise ValueError(f"lsdb belongs to {lsdb.self_id!r}, not {local_id!r}")
        self.local_id = local_id
        self.clock = clock
        #: The link-state database this topology reads (shared with the broker, or its own).
        self.lsdb = lsdb if lsdb is not None else LinkStateDB(local_id)
        self._direct: dict[str, PeerInfo] = {}
        self._direct_version = 0
        self._last_seen: dict[str, float] = {}
        self._view: _View | None = None
        self._view_key: tuple[int, int] = (-1, -1)
        self._seen_key: tuple[int, int] = (self.lsdb.version, 0)
        #: Which known nodes are unreachable since when (partition events).
        self.partitions = PartitionTracker(local_id)

    # -------------------------------------------------------------- changes
    def add_peer(self, peer: PeerInfo) -> None:
        """Register (or update) a direct neighbour; emits ``topology:updated``."""
        if peer.id == self.local_id:
            raise ValueError("the local node cannot be its own peer")
        if peer.id not in self._direct and len(self._direct) >= MAX_DIRECT_PEERS:
            raise ValueError(f"more than {MAX_DIRECT_PEERS} direct peers")
        if not peer.last_seen:
            peer = replace(peer, last_seen=self.clock())
        self._direct[peer.id] = peer
        self._last_seen[peer.id] = peer.last_seen
        self._direct_version += 1
        self._changed("peer_added", peer.id)

    def remove_peer(self, peer_id: str) -> bool:
        """Forget a direct neighbour; return whether it was one.  Emits ``topology:updated``."""
        if self._direct.pop(peer_id, None) is None:
            return False
        self._direct_version += 1
        self._changed("peer_removed", peer_id)
        return True

    def update_topology(self, update: LSA | Iterable[LSA] | None = None) -> list[Event]:
        """Install received LSAs (if given) and publish whatever changed since last time.

        With a shared database that the broker fills itself, call it without
        arguments.  Returns the events emitted (``topology:updated`` and any
        partition events).  Raises ProtocolError for an LSA over a bound.
        """
        if update is not None:
            lsas = (update,) if isinstance(update, LSA) else tuple(update)
            now = self.clock()
            for lsa in lsas:
                if self.lsdb.install(lsa, now, None):
                    self._last_seen[lsa.origin] = now
        return self._changed("lsa", None)

    def expire(self) -> list[str]:
        """Drop LSAs that outlived their ``max_age`` (now = clock()); return their origins."""
        version = self.lsdb.version
        removed = self.lsdb.expire(self.clock())
        for origin in removed:
            self._last_seen.pop(origin, None)
        if self.lsdb.version != version:
            self._changed("expired", None)
        return removed

    def _changed(self, reason: str, peer: str | None) -> list[Event]:
        key = (self.lsdb.version, self._direct_version)
        if key == self._seen_key:
            return []
        self._seen_key = key
        view = self._current()
        data: dict[str, Any] = {
            "reason": reason,
            "nodes": len(view.graph),
            "links": len(view.graph.edges),
            "reachable": len(view.paths),
        }
        if peer is not None:
            data["peer"] = peer
        events = [Event("topology:updated", data)]
        self.emit("topology:updated", data)
        return events + self.check_partitions()

    # ----------------------------------------------------------------- view
    def _current(self) -> _View:
        key = (self.lsdb.topology_version, self._direct_version)
        if self._view is None or key != self._view_key:
            graph = Graph.from_lsdb(self.lsdb)
            local = self.local_id
            graph.add_node(local)
            for origin in self.lsdb.retired_origins():
                graph.add_node(origin)  # known, down: a node without links
            for peer in self._direct.values():
                if graph.edge(local, peer.id) is None:
                    graph.add_edge(local, peer.id, peer.latency, peer.bandwidth, peer.loss)
            self._view = _View(graph, shortest_paths(graph, local))
            self._view_key = key
        return self._view

    def _components(self, view: _View) -> list[list[str]]:
        if view.components is None:
            view.components = view.graph.components()
        return view.components

    def _peer_info(self, node: str, view: _View) -> PeerInfo:
        lsa = self._last_lsa(node)
        direct = self._direct.get(node)
        path = view.paths.get(node)
        route = self._route_metrics(path, view.graph) if path is not None else None
        seen = self._seen(node)
        if direct is not None:
            if lsa is not None:
                direct = replace(direct, tools=lsa.tools, capabilities=lsa.capabilities,
                                 last_seen=max(direct.last_seen, seen))
            return direct
        return PeerInfo(
            id=node,
            name=lsa.name if lsa is not None else "",
            capabilities=lsa.capabilities if lsa is not None else (),
            tools=lsa.tools if lsa is not None else (),
            latency=route[0] if route is not None else 0.0,
            bandwidth=route[1] if route is not None else 0.0,
            last_seen=seen,
            kind=lsa.kind if lsa is not None else "broker",
            down_since=self.partitions.down_since(node),
        )

    def _last_lsa(self, node: str) -> LSA | None:
        """The stored LSA of ``node``, or the last one of a retired node."""
        lsa = self.lsdb.get(node)
        if lsa is None:
            retired = self.lsdb.retired(node)
            if retired is not None:
                lsa = retired[0]
        return lsa

    def _seen(self, node: str) -> float:
        """When ``node`` was last heard of: its latest LSA's arrival in the
        database (whoever installed it: this class or a broker sharing the
        database), or add_peer, whichever is later; 0.0 if never."""
        installed = self.lsdb.installed_at(node)
        recorded = self._last_seen.get(node, 0.0)
        return recorded if installed is None else max(installed, recorded)

    @staticmethod
    def _route_metrics(path: PathInfo, graph: Graph) -> tuple[float, float, float]:
        """Return (total latency, bottleneck bandwidth, reliability) along ``path``."""
        latency = 0.0
        bandwidth = float("inf")
        reliability = 1.0
        nodes = path.path
        for a, b in pairwise(nodes):
            edge = graph.edge(a, b)
            if edge is None:  # pragma: no cover - paths only use graph edges
                raise RuntimeError(f"path uses missing edge {a}-{b}")
            latency += edge.cost
            bandwidth = min(bandwidth, edge.bandwidth)
            reliability *= 1.0 - edge.loss
        return latency, (0.0 if bandwidth == float("inf") else bandwidth), reliability

    # -------------------------------------------------------------- queries
    def discover_peers(self) -> list[PeerInfo]:
        """Return every node we can reach, nearest first (ties by id)."""
        view = self._current()
        order = sorted(view.paths.items(), key=lambda item: (item[1].cost, item[0]))
        return [self._peer_info(node, view) for node, _ in order]

    def get_reachable_peers(self) -> list[str]:
        """Return the ids of every node we can reach, sorted."""
        return sorted(self._current().paths)

    def get_peer(self, node: str) -> PeerInfo | None:
        """Return what we know about ``node`` (reachable or not), or None if unknown."""
        view = self._current()
        if node == self.local_id or node not in view.graph:
            return None
        return self._peer_info(node, view)

    def find_route(self, destination: str) -> RouteInfo | None:
        """Return the route to ``destination``, or None if it is unknown, unreachable or us."""
        view = self._current()
        path = view.paths.get(destination)
        if path is None:
            return None
        latency, bandwidth, reliability = self._route_metrics(path, view.graph)
        return RouteInfo(
            destination=destination,
            path=path.path,
            next_hop=path.next_hop,
            hop_count=path.hops,
            total_latency=latency,
            bandwidth=bandwidth,
            reliability=reliability,
        )

    def get_network_stats(self) -> NetworkStats:
        """Return whole-mesh statistics (module docstring says how each is computed)."""
        view = self._current()
        paths = view.paths
        direct = len(view.graph.adjacency.get(self.local_id, ()))
        reachable = len(paths)
        diameter, exact = self._diameter(view)
        return NetworkStats(
            total_nodes=len(view.graph),
            direct_connections=direct,
            indirect_connections=reachable - direct,
            average_hop_count=(sum(p.hops for p in paths.values()) / reachable) if paths else 0.0,
            average_latency=(sum(p.cost for p in paths.values()) / reachable) if paths else 0.0,
            network_diameter=diameter,
            partitions=len(self._components(view)),
            unreachable_nodes=len(view.graph) - 1 - reachable,
            diameter_exact=exact,
        )

    def _diameter(self, view: _View) -> tuple[int, bool]:
        if view.diameter is not None:
            return view.diameter
        adjacency = view.graph.adjacency
        best = 0
        exact = len(adjacency) <= DIAMETER_EXACT_MAX_NODES
        if exact:
            for node in adjacency:
                hops = _dijkstra(adjacency, node, path_ties=False)[1]
                best = max(best, max(hops.values()))
        else:
            for component in self._components(view):
                if len(component) < 2:
                    continue
                start = self.local_id if self.local_id in component else component[0]
                for _ in range(DIAMETER_SWEEPS):
                    hops = _dijkstra(adjacency, start, path_ties=False)[1]
                    far = max(hops.items(), key=lambda item: (item[1], item[0]))
                    best = max(best, far[1])
                    start = far[0]
        view.diameter = (best, exact)
        return view.diameter

    def get_topology_graph(self) -> TopologyGraph:
        """Return every known node and counted link, sorted, for visualisation."""
        view = self._current()
        nodes: list[dict[str, Any]] = []
        for node in view.graph.nodes:
            lsa = self._last_lsa(node)
            direct = self._direct.get(node)
            if lsa is not None:
                name, kind = lsa.name, lsa.kind
                tools, caps = list(lsa.tools), list(lsa.capabilities)
                load, workers = lsa.load, lsa.workers
            elif direct is not None:
                name, kind = direct.name, direct.kind
                tools, caps = list(direct.tools), list(direct.capabilities)
                load, workers = 0.0, 0
            else:
                name, kind, tools, caps, load, workers = "", "broker", [], [], 0.0, 0
            nodes.append(
                {
                    "id": node,
                    "name": name,
                    "kind": kind,
                    "tools": tools,
                    "capabilities": caps,
                    "load": load,
                    "workers": workers,
                    "reachable": node == self.local_id or node in view.paths,
                    "local": node == self.local_id,
                    "down_since": self.partitions.down_since(node),
                }
            )
        edges = [
            {
                "source": e.a,
                "target": e.b,
                "latency": e.cost,
                "bandwidth": e.bandwidth,
                "loss": e.loss,
            }
            for _, e in sorted(view.graph.edges.items())
        ]
        return TopologyGraph(self.local_id, nodes, edges)

    # ----------------------------------------------------------- partitions
    def check_partitions(self) -> list[Event]:
        """Update the partition tracker from the current view; emit and return its events."""
        view = self._current()
        components = self._components(view)
        events = self.partitions.update(
            self.clock(), view.graph.nodes, set(view.paths), components=components
        )
        self.emit_events(events)
        return events


class PartitionTracker:
    """Which known nodes are unreachable, since when, and the partition events.

    Rules (``update`` is called with every known node -- stored or retired
    in the database -- and the reachable ones):

    * A known node other than the local one that is not reachable is
      *down*; it is down since the first update that saw it so, and stays
      down (with that time) until it is reachable again or no longer known.
    * A node down for at least ``hold`` seconds is *reported*: the update
      that reports new nodes returns ``partition:detected`` naming them
      (``new``) and every reported node (``unreachable``), with the times.
      ``hold`` hides links that are briefly one-sided while they come up.
    * Reported nodes that are reachable again: ``partition:healed`` if no
      reported node is left, else ``partition:rejoined``.  A heal is never
      claimed for nodes that were merely forgotten.
    * Reported nodes no longer known (the database dropped them after its
      retention time): ``partition:forgotten``.  If that empties the set,
      the partition is over without a heal.
    * Events come in the order forgotten, healed/rejoined, detected.

    At most one entry per known node, so it is bounded by the database.
    """

    def __init__(self, local_id: str, hold: float = 0.0) -> None:
        if not 0.0 <= hold < float("inf"):
            raise ValueError("hold must be a finite number of seconds >= 0")
        self.local_id = local_id
        self.hold = hold
        self._since: dict[str, float] = {}
        self._reported: set[str] = set()

    def down_since(self, node: str) -> float | None:
        """When ``node`` was first seen unreachable, or None if it is not down."""
        return self._since.get(node)

    @property
    def down(self) -> dict[str, float]:
        """Every down node and since when (a copy)."""
        return dict(self._since)

    @property
    def unreachable(self) -> list[str]:
        """The reported (down for at least ``hold``) nodes, sorted."""
        return sorted(self._reported)

    def next_deadline(self) -> float | None:
        """When a down node will have been down for ``hold`` (call ``update`` then), or None."""
        pending = [t + self.hold for n, t in self._since.items() if n not in self._reported]
        return min(pending) if pending else None

    def update(
        self,
        now: float,
        known: Iterable[str],
        reachable: set[str],
        *,
        components: list[list[str]] | None = None,
    ) -> list[Event]:
        """Compare with the last update; return the partition events (see the rules)."""
        known_set = set(known)
        known_set.discard(self.local_id)
        since = self._since
        reported = self._reported
        gone = [n for n in since if n not in known_set]
        back = [n for n in since if n in reachable]
        forgotten = sorted(n for n in gone if n in reported)
        rejoined = sorted(n for n in back if n in reported)
        forgotten_since = {n: since[n] for n in forgotten}
        for n in gone + back:
            del since[n]
            reported.discard(n)
        for n in known_set:
            if n not in reachable and n not in since:
                since[n] = now
        new = sorted(n for n, t in since.items() if n not in reported and now - t >= self.hold)
        reported.update(new)
        count = len(components) if components is not None else (2 if reported else 1)
        events: list[Event] = []
        if forgotten:
            events.append(
                Event(
                    PARTITION_FORGOTTEN,
                    {
                        "forgotten": forgotten,
                        "down_since": forgotten_since,
                        "unreachable": sorted(reported - set(new)),
                    },
                )
            )
        if rejoined:
            if reported:
                events.append(
                    Event(
                        PARTITION_REJOINED,
                        {
                            "rejoined": rejoined,
                            "unreachable": sorted(reported),
                            "partitions": count,
                        },
                    )
                )
            else:
                events.append(
                    Event(PARTITION_HEALED, {"partitions": 1, "rejoined": rejoined, "lost": []})
                )
        if new:
            unreachable = sorted(reported)
            local_component = next(
                (c for c in components or () if self.local_id in c), [self.local_id]
            )
            events.append(
                Event(
                    PARTITION_DETECTED,
                    {
                        "partitions": count,
                        "unreachable": unreachable,
                        "new": new,
                        "down_since": {n: since[n] for n in unreachable},
                        "components": [list(c) for c in components or ()],
                        "local_component": list(local_component),
                        "separated": unreachable,
                    },
                )
            )
        return events
