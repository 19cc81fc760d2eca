"""Shortest paths over the link-state graph, identical on every node.

Graph rules (:meth:`Graph.from_lsas`):

* Nodes are the origins of the LSAs.  A neighbour named in a link but with
  no LSA of its own is not a node.
* **A link counts only when both ends advertise it.**  A one-sided link is
  a link that is going down, or not up yet, or invented by a liar; routing
  over it would black-hole traffic.
* The two ends measure the link separately; the graph uses the **larger**
  of the two costs (the max, not the mean: a link one side finds slow is
  slow, and the max can only be lowered by the side that measured it high),
  the smaller known bandwidth (0 = unknown on one side takes the other's)
  and the larger loss.  The result is symmetric, so the graph is undirected
  and a path from A to B costs the same as from B to A.
* Costs are milliseconds, quantised to whole microseconds
  (:data:`COST_QUANTUM_MS`), with a minimum of one.  Integer sums are exact
  and associative, so two paths of equal cost compare equal on every node
  whatever order they were summed in, and a positive minimum rules out
  zero-cost cycles (hop-by-hop forwarding over shortest paths is loop-free
  only when every link costs something).

Path rules (:func:`shortest_paths`), a strict total order so that every node
computing over the same database picks the same path:

1. lower total cost wins;
2. at equal cost, fewer hops wins;
3. at equal cost and hops, the lexicographically smaller path (the tuple of
   node ids from the source, compared with ``<`` on ``str``) wins.

Dijkstra with a binary heap (``heapq``) over pre-built adjacency lists of
``(weight_us, neighbour)`` tuples; the tie-break walks predecessor chains
only when two candidate paths have the same cost and hop count.

:class:`RoutingTable` wraps a :class:`~operone_zmq.routing.lsdb.LinkStateDB`
and recomputes lazily, when the database's ``topology_version`` has changed
since the last computation.

No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Final, NamedTuple

from operone_zmq.routing.lsa import LSA

if TYPE_CHECKING:
    from operone_zmq.routing.lsdb import LinkStateDB

__all__ = [
    "COST_QUANTUM_MS",
    "Edge",
    "Graph",
    "PathInfo",
    "Route",
    "RoutingTable",
    "shortest_paths",
]

#: Resolution of path costs, in ms: one microsecond.  Far below the jitter
#: of any RTT measurement, and small enough that a 10,000-hop path of
#: one-hour links still fits comfortably in a machine-sized integer.
COST_QUANTUM_MS: Final = 0.001


def _weight(cost_ms: float) -> int:
    """Quantise a cost in ms to whole microseconds, at least 1."""
    w = round(cost_ms / COST_QUANTUM_MS)
    return w if w > 0 else 1


class Edge(NamedTuple):
    """An undirected link counted by the graph (``a < b``), with its merged metrics."""

    a: str
    b: str
    #: Link cost in ms (the larger of the two advertised RTTs).
    cost: float
    #: Bandwidth in MB/s (the smaller of the two known estimates; 0 = unknown).
    bandwidth: float
    #: Loss fraction 0..1 (the larger of the two).
    loss: float


class PathInfo(NamedTuple):
    """The chosen path from the source to one destination."""

    #: First node after the source: the neighbour to forward to.
    next_hop: str
    #: Total cost in ms (sum of the quantised link costs).
    cost: float
    #: Number of links on the path.
    hops: int
    #: Every node on the path, the source first and the destination last.
    path: tuple[str, ...]

    @property
    def destination(self) -> str:
        """The last node of the path."""
        return self.path[-1]


#: A route is the path to one destination; the same type under the name the
#: routing table uses.
Route = PathInfo


class Graph:
    """An undirected weighted graph: adjacency lists plus per-edge metrics."""

    __slots__ = ("adjacency", "edges")

    def __init__(self) -> None:
        #: node -> list of (weight in microseconds, neighbour).
        self.adjacency: dict[str, list[tuple[int, str]]] = {}
        #: (a, b) with a < b -> Edge.
        self.edges: dict[tuple[str, str], Edge] = {}

    # ------------------------------------------------------------ building
    def add_node(self, node: str) -> None:
        """Add ``node`` (no-op if present)."""
        if node not in self.adjacency:
            self.adjacency[node] = []

    def add_edge(
        self, a: str, b: str, cost: float, bandwidth: float = 0.0, loss: float = 0.0
    ) -> None:
        """Add or replace the undirected edge ``a``--``b`` (cost in ms)."""
        if a == b:
            raise ValueError(f"self-loop on {a!r}")
        if b < a:
            a, b = b, a
        if (a, b) in self.edges:
            self.remove_edge(a, b)
        weight = _weight(cost)
        self.adjacency.setdefault(a, []).append((weight, b))
        self.adjacency.setdefault(b, []).append((weight, a))
        self.edges[a, b] = Edge(a, b, cost, bandwidth, loss)

    def remove_edge(self, a: str, b: str) -> bool:
        """Remove the edge ``a``--``b``; return whether it existed."""
        if b < a:
            a, b = b, a
        if self.edges.pop((a, b), None) is None:
            return False
        self.adjacency[a] = [e for e in self.adjacency[a] if e[1] != b]
        self.adjacency[b] = [e for e in self.adjacency[b] if e[1] != a]
        return True

    @classmethod
    def from_edges(
        cls,
        edges: Iterable[tuple[str, str, float] | tuple[str, str, float, float, float]],
        nodes: Iterable[str] = (),
    ) -> Graph:
        """Build a graph from ``(a, b, cost[, bandwidth, loss])`` tuples and extra nodes."""
        graph = cls()
        for node in nodes:
            graph.add_node(node)
        for edge in edges:
            graph.add_edge(*edge)
        return graph

    @classmethod
    def from_lsas(cls, lsas: Iterable[LSA]) -> Graph:
        """Build the graph of a set of LSAs under the both-ends rule (module docstring)."""
        by_origin = {lsa.origin: lsa for lsa in lsas}
        graph = cls()
        adjacency = graph.adjacency
        edges = graph.edges
        for origin in by_origin:
            adjacency[origin] = []
        for a, lsa in by_origin.items():
            for link in lsa.links:
                b = link.neighbor
                if b <= a:  # each pair once, from its smaller end
                    continue
                other = by_origin.get(b)
                if other is None:
                    continue
                back = other._by_neighbor.get(a)
                if back is None:  # one-sided: does not count
                    continue
                cost = link.cost if link.cost >= back.cost else back.cost
                bw1, bw2 = link.bandwidth, back.bandwidth
                bandwidth = min(bw1, bw2) if bw1 and bw2 else (bw1 or bw2)
                loss = link.loss if link.loss >= back.loss else back.loss
                weight = _weight(cost)
                adjacency[a].append((weight, b))
                adjacency[b].append((weight, a))
                edges[a, b] = Edge(a, b, cost, bandwidth, loss)
        return graph

    @classmethod
    def from_lsdb(cls, lsdb: LinkStateDB) -> Graph:
        """Build the graph of everything a link-state database holds."""
        return cls.from_lsas(lsdb.lsas())

    # ------------------------------------------------------------- queries
    def __contains__(self, node: object) -> bool:
        return node in self.adjacency

    def __len__(self) -> int:
        return len(self.adjacency)

    @property
    def nodes(self) -> list[str]:
        """Return the nodes, sorted."""
        return sorted(self.adjacency)

    def neighbors(self, node: str) -> list[str]:
        """Return the neighbours of ``node``, sorted (empty if unknown)."""
        return sorted(n for _, n in self.adjacency.get(node, ()))

    def edge(self, a: str, b: str) -> Edge | None:
        """Return the edge ``a``--``b`` or None."""
        return self.edges.get((a, b) if a < b else (b, a))

    def components(self) -> list[list[str]]:
        """Return the connected components, each sorted, largest first (ties: smallest id)."""
        adjacency = self.adjacency
        seen: set[str] = set()
        components: list[list[str]] = []
        for start in adjacency:
            if start in seen:
                continue
            seen.add(start)
            stack = [start]
            members = [start]
            while stack:
                node = stack.pop()
                for _, nb in adjacency[node]:
                    if nb not in seen:
                        seen.add(nb)
                        stack.append(nb)
                        members.append(nb)
            members.sort()
            components.append(members)
        components.sort(key=lambda c: (-len(c), c[0]))
        return components


def _path_to(pred: dict[str, str], node: str) -> list[str]:
    """Return the path from the source to ``node`` (source first), from predecessors."""
    path = [node]
    while node in pred:
        node = pred[node]
        path.append(node)
    path.reverse()
    return path


def _dijkstra(
    adjacency: dict[str, list[tuple[int, str]]], source: str, *, path_ties: bool = True
) -> tuple[dict[str, int], dict[str, int], dict[str, str], list[str]]:
    """Run Dijkstra from ``source``.

    Return ``(dist_us, hops, pred, order)``: distances in microseconds, hop
    counts, predecessors (the source has none) and the settle order
    (source first).  Only reachable nodes appear.  With ``path_ties=False``
    the third tie-break rule is skipped: distances and hop counts are the
    same, only the choice among equal paths may differ (for statistics).
    """
    dist: dict[str, int] = {source: 0}
    hops: dict[str, int] = {source: 0}
    pred: dict[str, str] = {}
    done: set[str] = set()
    order: list[str] = []
    heap: list[tuple[int, int, str]] = [(0, 0, source)]
    dist_get = dist.get
    while heap:
        d, h, u = heappop(heap)
        if u in done:
            continue
        done.add(u)
        order.append(u)
        nh = h + 1
        for w, v in adjacency[u]:
            nd = d + w
            old = dist_get(v)
            if old is None or nd < old:
                dist[v] = nd
                hops[v] = nh
                pred[v] = u
                heappush(heap, (nd, nh, v))
            elif nd == old:
                oh = hops[v]
                if nh < oh:
                    hops[v] = nh
                    pred[v] = u
                    heappush(heap, (nd, nh, v))
                elif path_ties and nh == oh and _path_to(pred, u) < _path_to(pred, pred[v]):
                    # Equal cost and hops: the lexicographically smaller path
                    # wins.  Every candidate predecessor costs strictly less
                    # than v (weights are >= 1), so all are settled (their
                    # paths final) before v is.
                    pred[v] = u
    return dist, hops, pred, order


def shortest_paths(graph: Graph, source: str) -> dict[str, PathInfo]:
    """Return the chosen path from ``source`` to every node it can reach (itself excluded)."""
    if source not in graph.adjacency:
        return {}
    dist, hops, pred, order = _dijkstra(graph.adjacency, source)
    paths: dict[str, tuple[str, ...]] = {source: (source,)}
    first: dict[str, str] = {}
    result: dict[str, PathInfo] = {}
    quantum = COST_QUANTUM_MS
    for node in order[1:]:
        p = pred[node]
        path = paths[p] + (node,)
        paths[node] = path
        nxt = node if p == source else first[p]
        first[node] = nxt
        result[node] = PathInfo(nxt, dist[node] * quantum, hops[node], path)
    return result


class RoutingTable:
    """Next hops from one node, recomputed when its database's topology changes.

    With ``auto=True`` (the default) any lookup after a topology change
    recomputes at once.  With ``auto=False`` the table keeps answering from
    its last computation until :meth:`recompute` is called, so the owner can
    throttle SPF (:class:`~operone_zmq.routing.damping.SpfThrottle`), with
    two exceptions: the very first lookup computes, and a :meth:`next_hop`
    or :meth:`route` that finds *no* route while the table is stale
    recomputes at once (at most once per topology version), so a node that
    just became reachable -- a reply to a job that came over a new link --
    never waits for the throttle.  Existing routes keep following the
    throttle: that is where cost churn would cost SPF runs.
    """

    def __init__(self, lsdb: LinkStateDB, *, auto: bool = True) -> None:
        self._lsdb = lsdb
        self._auto = auto
        self._version = -1
        self._graph = Graph()
        self._paths: dict[str, PathInfo] = {}
        #: How many times the table was recomputed (for tests and metrics).
        self.computations = 0

    @property
    def stale(self) -> bool:
        """Whether the database's topology changed since the last computation."""
        return self._version != self._lsdb.topology_version

    def recompute(self) -> None:
        """Run SPF now if the topology changed since the last run."""
        if self.stale:
            self._compute()

    def _compute(self) -> None:
        self._graph = Graph.from_lsdb(self._lsdb)
        self._paths = shortest_paths(self._graph, self._lsdb.self_id)
        self._version = self._lsdb.topology_version
        self.computations += 1

    @property
    def source(self) -> str:
        """The node this table routes from."""
        return self._lsdb.self_id

    def _refresh(self) -> dict[str, PathInfo]:
        if self._version != self._lsdb.topology_version and (self._auto or self._version < 0):
            self._compute()
        return self._paths

    @property
    def graph(self) -> Graph:
        """The graph the current routes were computed from."""
        self._refresh()
        return self._graph

    def _lookup(self, dest: str) -> PathInfo | None:
        info = self._refresh().get(dest)
        if info is None and self._version != self._lsdb.topology_version:
            self._compute()  # a miss on a stale table: see the class docstring
            info = self._paths.get(dest)
        return info

    def next_hop(self, dest: str) -> str | None:
        """Return the neighbour to forward to for ``dest``, or None if unreachable (or us)."""
        info = self._lookup(dest)
        return None if info is None else info.next_hop

    def route(self, dest: str) -> Route | None:
        """Return the whole route to ``dest``, or None if unreachable (or us)."""
        return self._lookup(dest)

    def routes(self) -> dict[str, Route]:
        """Return every route, by destination (a copy)."""
        return dict(self._refresh())

    def reachable(self) -> set[str]:
        """Return the nodes we can reach, ourselves excluded."""
        return set(self._refresh())
