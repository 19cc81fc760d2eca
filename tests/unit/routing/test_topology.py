"""NetworkTopology: the original's API over link-state data, stats, exports, partition events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from operone_zmq.routing.events import MAX_LISTENERS_PER_EVENT, Event, EventEmitter
from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.routing.lsdb import LinkStateDB
from operone_zmq.routing.topology import (
    DIAMETER_EXACT_MAX_NODES,
    NetworkTopology,
    PeerInfo,
)
from operone_zmq.testing import FakeClock


def lsa(origin: str, *links: tuple[str, float] | LinkInfo, seq: int = 1, **kw: Any) -> LSA:
    """An LSA advertising the given links ((neighbour, cost) pairs or LinkInfo)."""
    infos = tuple(x if isinstance(x, LinkInfo) else LinkInfo(*x) for x in links)
    return LSA(origin, seq, infos, **kw)


def mesh(clock: FakeClock | None = None) -> NetworkTopology:
    """local - a (1 ms) - b (2 ms) - c (3 ms), plus an ssh host h behind b."""
    topo = NetworkTopology("local", clock or FakeClock())
    topo.lsdb.originate([LinkInfo("a", 1.0)], [], [], 0.0, 1, now=0.0)
    topo.update_topology(
        [
            lsa("a", ("local", 1.0), ("b", 2.0), name="alpha", tools=("echo",)),
            lsa("b", LinkInfo("a", 2.0, 50.0, 0.1), LinkInfo("c", 3.0, 10.0), ("h", 4.0)),
            lsa("c", LinkInfo("b", 3.0, 20.0, 0.5), capabilities=("gpu",)),
            lsa("h", ("b", 4.0), kind="ssh", tools=("shell",)),
        ]
    )
    return topo


class Recorder:
    """Collects (event, data) pairs from an emitter."""

    def __init__(self, emitter: EventEmitter, *names: str) -> None:
        self.seen: list[tuple[str, Any]] = []
        for name in names:
            emitter.on(name, lambda data, name=name: self.seen.append((name, data)))

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


# ------------------------------------------------------------------ routes
def test_find_route_multi_hop_metrics() -> None:
    """A route reports hops, summed latency, bottleneck bandwidth and reliability."""
    route = mesh().find_route("c")
    assert route is not None
    assert route.destination == "c"
    assert route.path == ("local", "a", "b", "c")
    assert route.hops == ["a", "b", "c"]
    assert route.next_hop == "a"
    assert route.hop_count == 3
    assert route.total_latency == pytest.approx(6.0)
    assert route.bandwidth == 0.0  # local-a and a-b bandwidths unknown
    assert route.reliability == pytest.approx(0.9 * 0.5)


def test_bottleneck_bandwidth_when_all_known() -> None:
    """Bandwidth is the minimum along the path when every link is measured."""
    topo = NetworkTopology("x", FakeClock())
    topo.lsdb.originate([LinkInfo("y", 1.0, 100.0)], [], [], 0.0, 1, now=0.0)
    topo.update_topology(
        [lsa("y", LinkInfo("x", 1.0, 80.0), LinkInfo("z", 1.0, 30.0)), lsa("z", ("y", 1.0))]
    )
    route = topo.find_route("z")
    assert route is not None
    assert route.bandwidth == 30.0


def test_no_route_to_unknown_unreachable_or_self() -> None:
    """find_route returns None for unknown nodes, other partitions and the local node."""
    topo = mesh()
    topo.update_topology([lsa("island", ("nobody", 1.0))])
    assert topo.find_route("zzz") is None
    assert topo.find_route("island") is None
    assert topo.find_route("local") is None


def test_add_peer_links_at_once_and_remove_peer_unlinks() -> None:
    """A direct peer is routable at once (our session proves the link), and removable."""
    clock = FakeClock(50.0)
    topo = NetworkTopology("local", clock)
    rec = Recorder(topo, "topology:updated")
    topo.add_peer(PeerInfo("p", name="pc-p", address="10.0.0.2:7700", latency=4.0, tools=("x",)))
    route = topo.find_route("p")
    assert route is not None
    assert (route.next_hop, route.total_latency) == ("p", 4.0)
    peers = topo.discover_peers()
    assert [p.id for p in peers] == ["p"]
    assert peers[0].address == "10.0.0.2:7700"
    assert peers[0].last_seen == 50.0
    assert rec.names() == ["topology:updated"]
    assert topo.remove_peer("p")
    assert not topo.remove_peer("p")
    assert topo.find_route("p") is None
    assert rec.names() == ["topology:updated", "topology:updated"]
    with pytest.raises(ValueError):
        topo.add_peer(PeerInfo("local"))


def test_discover_peers_nearest_first_with_lsa_data() -> None:
    """discover_peers lists reachable nodes by route cost, with names, tools and kinds."""
    peers = mesh().discover_peers()
    assert [p.id for p in peers] == ["a", "b", "c", "h"]
    by_id = {p.id: p for p in peers}
    assert by_id["a"].name == "alpha"
    assert by_id["a"].tools == ("echo",)
    assert by_id["c"].capabilities == ("gpu",)
    assert by_id["c"].latency == pytest.approx(6.0)
    assert by_id["h"].kind == "ssh"
    assert mesh().get_reachable_peers() == ["a", "b", "c", "h"]


def test_shared_lsdb_is_read_without_feeding() -> None:
    """With the broker's database shared, update_topology() just publishes changes."""
    db = LinkStateDB("local")
    topo = NetworkTopology("local", FakeClock(), lsdb=db)
    db.originate([LinkInfo("a", 1.0)], [], [], 0.0, 1, now=0.0)
    db.install(lsa("a", ("local", 1.0)), 0.0, "a")
    events = topo.update_topology()
    assert [e.name for e in events] == ["topology:updated"]
    assert topo.update_topology() == []  # nothing new
    assert topo.get_reachable_peers() == ["a"]
    with pytest.raises(ValueError):
        NetworkTopology("other", FakeClock(), lsdb=db)


def test_expire_forgets_silent_nodes() -> None:
    """LSAs that are not refreshed age out through expire()."""
    clock = FakeClock(0.0)
    topo = mesh(clock)
    clock.advance(61.0)
    assert sorted(topo.expire()) == ["a", "b", "c", "h"]
    assert topo.get_reachable_peers() == []


# ------------------------------------------------------------------ stats
def test_network_stats() -> None:
    """Totals, direct/indirect counts, averages, diameter and partitions."""
    stats = mesh().get_network_stats()
    assert stats.total_nodes == 5
    assert stats.direct_connections == 1
    assert stats.indirect_connections == 3
    assert stats.average_hop_count == pytest.approx((1 + 2 + 3 + 3) / 4)
    assert stats.average_latency == pytest.approx((1 + 3 + 6 + 7) / 4)
    assert stats.network_diameter == 3  # local-a-b-c and local-a-b-h
    assert stats.partitions == 1
    assert stats.unreachable_nodes == 0
    assert stats.diameter_exact


def test_stats_of_a_lonely_node() -> None:
    """A node that knows nobody has one node, no connections and one partition."""
    stats = NetworkTopology("solo", FakeClock()).get_network_stats()
    assert (stats.total_nodes, stats.direct_connections, stats.partitions) == (1, 0, 1)
    assert (stats.average_hop_count, stats.average_latency, stats.network_diameter) == (0, 0, 0)


def test_diameter_estimate_on_a_large_chain() -> None:
    """Past the exact-computation bound, the sweep estimate still finds a chain's length."""
    n = DIAMETER_EXACT_MAX_NODES + 50
    ids = [f"n{i:04d}" for i in range(n)]
    topo = NetworkTopology("observer", FakeClock())
    topo.add_peer(PeerInfo(ids[n // 3], latency=1.0))
    lsas = []
    for i, node in enumerate(ids):
        links = [(ids[j], 1.0) for j in (i - 1, i + 1) if 0 <= j < n]
        lsas.append(lsa(node, *links))
    topo.update_topology(lsas)
    stats = topo.get_network_stats()
    assert stats.partitions == 1
    assert not stats.diameter_exact
    assert stats.network_diameter == n - 1


# ------------------------------------------------------------------ partitions
def test_partition_detected_and_healed() -> None:
    """Components of the whole graph drive partition events, with who rejoined."""
    topo = mesh()
    rec = Recorder(topo, "partition:detected", "partition:healed", "topology:updated")
    # b drops its link to c: c is cut off (a stale but one-sided link does not count).
    events = topo.update_topology(lsa("b", ("a", 2.0), ("h", 4.0), seq=2))
    assert [e.name for e in events] == ["topology:updated", "partition:detected"]
    detected = events[1].data
    assert detected["partitions"] == 2
    assert detected["separated"] == ["c"]
    assert "local" in detected["local_component"]
    assert topo.get_network_stats().partitions == 2
    assert topo.get_network_stats().unreachable_nodes == 1
    # The link comes back.
    events = topo.update_topology(lsa("b", ("a", 2.0), ("h", 4.0), ("c", 3.0), seq=3))
    assert [e.name for e in events] == ["topology:updated", "partition:healed"]
    assert events[1].data == {"partitions": 1, "rejoined": ["c"], "lost": []}
    assert rec.names() == [
        "topology:updated",
        "partition:detected",
        "topology:updated",
        "partition:healed",
    ]


def test_expired_cut_off_side_is_not_a_heal() -> None:
    """When the cut-off side ages out it stays known and down: no heal is claimed."""
    clock = FakeClock(0.0)
    topo = mesh(clock)
    rec = Recorder(topo, "partition:healed", "partition:forgotten")
    topo.update_topology(lsa("b", ("a", 2.0), ("h", 4.0), seq=2))
    clock.advance(30.0)
    topo.update_topology(  # everyone but c refreshes
        [
            lsa("a", ("local", 1.0), ("b", 2.0), seq=2),
            lsa("b", ("a", 2.0), ("h", 4.0), seq=3),
            lsa("h", ("b", 4.0), seq=2, kind="ssh"),
        ]
    )
    clock.advance(31.0)
    assert topo.expire() == ["c"]
    assert rec.seen == []
    assert topo.check_partitions() == []
    stats = topo.get_network_stats()
    assert stats.partitions == 2
    assert stats.unreachable_nodes == 1
    peer = topo.get_peer("c")
    assert peer is not None
    assert peer.capabilities == ("gpu",)
    assert peer.down_since == 0.0


def test_check_partitions_is_idempotent() -> None:
    """Repeated checks without change emit nothing."""
    topo = mesh()
    topo.update_topology(lsa("b", ("a", 2.0), ("h", 4.0), seq=2))
    assert topo.check_partitions() == []


def test_further_split_is_detected_again() -> None:
    """A rise from 2 to 3 components is another partition:detected."""
    topo = mesh()
    topo.update_topology(lsa("b", ("a", 2.0), ("h", 4.0), seq=2))
    events = topo.update_topology(lsa("b", ("a", 2.0), seq=3))
    assert [e.name for e in events][-1] == "partition:detected"
    assert events[-1].data["partitions"] == 3


# ------------------------------------------------------------------ exports
def test_topology_graph_json() -> None:
    """The JSON export parses and lists nodes and counted edges with their metrics."""
    graph = mesh().get_topology_graph()
    data = json.loads(graph.to_json())
    assert data["local"] == "local"
    ids = [n["id"] for n in data["nodes"]]
    assert ids == ["a", "b", "c", "h", "local"]
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id["h"]["kind"] == "ssh"
    assert by_id["c"]["capabilities"] == ["gpu"]
    assert by_id["local"]["local"] is True
    assert all(n["reachable"] for n in data["nodes"])
    edges = {(e["source"], e["target"]): e for e in data["edges"]}
    assert set(edges) == {("a", "local"), ("a", "b"), ("b", "c"), ("b", "h")}
    assert edges["b", "c"]["latency"] == 3.0
    assert edges["b", "c"]["bandwidth"] == 10.0
    assert set(by_id["a"]) >= {"id", "name", "kind", "tools", "capabilities", "load", "reachable"}


def test_topology_graph_dot() -> None:
    """The DOT export draws SSH hosts as boxes, the local node bold, unreachable dashed."""
    topo = mesh()
    topo.update_topology(lsa('we"ird', ("nobody", 1.0)))
    dot = topo.get_topology_graph().to_dot()
    lines = dot.splitlines()
    assert lines[0] == 'graph "operone" {'
    assert lines[-1] == "}"
    assert '  "h" [label="h", shape=box];' in lines
    assert '  "local" [label="local", style=bold];' in lines
    assert '  "a" [label="a (alpha)"];' in lines
    assert '  "we\\"ird" [label="we\\"ird", style=dashed];' in lines
    assert '  "b" -- "c" [label="3.00 ms, 10 MB/s"];' in lines
    assert sum(" -- " in line for line in lines) == 4


# ------------------------------------------------------------------ events
def test_emitter_isolates_failing_callbacks() -> None:
    """A raising callback does not stop the others; the error reaches the hook."""
    emitter = EventEmitter()
    seen: list[Any] = []
    hooked: list[str] = []

    def bad(_: Any) -> None:
        raise RuntimeError("boom")

    emitter.on("x", bad)
    emitter.on("x", seen.append)
    emitter.on_error = lambda name, cb, exc: hooked.append(f"{name}:{exc}")
    assert emitter.emit("x", 1) == 2
    assert seen == [1]
    assert hooked == ["x:boom"]
    assert emitter.errors[-1].event == "x"
    assert emitter.off("x", bad)
    assert not emitter.off("x", bad)
    assert emitter.listener_count("x") == 1
    assert emitter.emit("nothing") == 0
    emitter.emit_events([Event("x", {"k": 1})])
    assert seen == [1, {"k": 1}]


def test_emitter_bounds_listeners() -> None:
    """Registering past the bound raises instead of leaking."""
    emitter = EventEmitter()
    for _ in range(MAX_LISTENERS_PER_EVENT):
        emitter.on("x", print)
    with pytest.raises(RuntimeError, match="leak"):
        emitter.on("x", print)


def test_slow_direct_link_still_counts_as_direct() -> None:
    """A neighbour reached more cheaply through another node is still a direct connection."""
    topo = NetworkTopology("x", FakeClock())
    topo.lsdb.originate([LinkInfo("y", 1.0), LinkInfo("z", 100.0)], [], [], 0.0, 1, now=0.0)
    topo.update_topology(
        [lsa("y", ("x", 1.0), ("z", 1.0)), lsa("z", ("x", 100.0), ("y", 1.0), name="zed")]
    )
    stats = topo.get_network_stats()
    assert (stats.direct_connections, stats.indirect_connections) == (2, 0)
    route = topo.find_route("z")
    assert route is not None
    assert route.path == ("x", "y", "z")
    peer = topo.get_peer("z")
    assert peer is not None
    assert (peer.name, peer.latency) == ("zed", 2.0)
    assert topo.get_peer("x") is None
    assert topo.get_peer("nobody") is None
