"""Link-state routing, with no I/O: LSAs, the LSDB, Dijkstra, NetworkTopology.

Everything here is plain computation: LSAs and ``now`` (monotonic seconds)
go in; decisions (store or not, flood to whom, next hop, events) come out.
It imports neither ``zmq`` nor ``asyncio`` nor ``time``; the broker feeds it.

Modules, each with its rules in its docstring:

* :mod:`.lsa` -- the immutable, self-validating advertisement and its wire form
* :mod:`.lsdb` -- the database: seq/age rules, origination, flooding queues
* :mod:`.dijkstra` -- the graph (both-ends rule) and deterministic shortest paths
* :mod:`.topology` -- the original package's ``NetworkTopology`` API, partitions
* :mod:`.events` -- the small synchronous event emitter the broker reuses
* :mod:`.damping` -- cost bands, LSA pacing, SPF throttle, liveness (anti-churn)
* :mod:`.sim` -- an in-memory simulator of flooding for ``scripts/simulate.py``
"""

from __future__ import annotations

from operone_zmq.routing.dijkstra import (
    Edge,
    Graph,
    PathInfo,
    Route,
    RoutingTable,
    shortest_paths,
)
from operone_zmq.routing.events import Event, EventEmitter
from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.routing.lsdb import (
    Flooder,
    InstallResult,
    LinkStateDB,
    flood_targets,
    initial_seq,
)
from operone_zmq.routing.topology import (
    NetworkStats,
    NetworkTopology,
    PeerInfo,
    RouteInfo,
    TopologyGraph,
)

# Grouped by role in the module docstring; kept sorted here for the linter.
__all__ = [
    "LSA",
    "Edge",
    "Event",
    "EventEmitter",
    "Flooder",
    "Graph",
    "InstallResult",
    "LinkInfo",
    "LinkStateDB",
    "NetworkStats",
    "NetworkTopology",
    "PathInfo",
    "PeerInfo",
    "Route",
    "RouteInfo",
    "RoutingTable",
    "TopologyGraph",
    "flood_targets",
    "initial_seq",
    "shortest_paths",
]
