"""Issue 9 item 5: dead nodes stay known as "down since T", and no heal is claimed.

The line pc1 - pc2 - pc3 as pc1 sees it; pc2 dies at T = 10 s.  Before the
fix, about 60 s later pc2 and pc3 vanished (their LSAs aged out),
``partition:healed`` was reported while both were still dead, and errors
said "unknown node" instead of "known but unreachable".
"""

from __future__ import annotations

from typing import Any

import pytest

from operone_zmq.routing.dijkstra import RoutingTable
from operone_zmq.routing.events import Event
from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.routing.lsdb import DEFAULT_DOWN_RETENTION, MAX_RETIRED, LinkStateDB
from operone_zmq.routing.topology import NetworkTopology, PartitionTracker
from operone_zmq.testing import FakeClock

T = 10.0
RETENTION = 3600.0


def links(*names: str) -> tuple[LinkInfo, ...]:
    return tuple(LinkInfo(n, 1.0) for n in names)


def line(clock: FakeClock, retention: float = RETENTION) -> NetworkTopology:
    """pc1's view of pc1 - pc2 - pc3, everything up."""
    db = LinkStateDB("pc1", retention=retention)
    topo = NetworkTopology("pc1", clock, lsdb=db)
    db.originate(links("pc2"), (), (), 0.0, 1, clock())
    topo.update_topology(
        [LSA("pc2", 1, links("pc1", "pc3"), tools=("echo",)), LSA("pc3", 1, links("pc2"))]
    )
    return topo


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


def kill_pc2(topo: NetworkTopology, clock: FakeClock) -> list[Event]:
    """pc2 dies at T: pc1 notices and re-originates without the link."""
    clock.advance(T - clock())
    topo.lsdb.originate((), (), (), 0.0, 1, clock())
    return topo.update_topology()


def test_down_nodes_stay_known_and_no_heal_is_claimed() -> None:
    """60+ s after pc2 dies, pc2 and pc3 are still known, down since T, with no heal."""
    clock = FakeClock(0.0)
    topo = line(clock)
    seen: list[tuple[str, Any]] = []
    for name in ("partition:detected", "partition:healed", "partition:forgotten"):
        topo.on(name, lambda data, name=name: seen.append((name, data)))
    events = kill_pc2(topo, clock)
    assert names(events) == ["topology:updated", "partition:detected"]
    detected = events[1].data
    assert detected["unreachable"] == ["pc2", "pc3"]
    assert detected["new"] == ["pc2", "pc3"]
    assert detected["down_since"] == {"pc2": T, "pc3": T}

    for t in (30.0, 61.0, 75.0, 200.0):  # nobody refreshes pc2/pc3 any more
        clock.advance(t - clock())
        topo.lsdb.originate((), (), (), 0.0, 1, t)  # pc1 refreshes itself
        topo.expire()
        topo.update_topology()
    assert "pc2" not in topo.lsdb  # aged out of the database proper...
    for node in ("pc2", "pc3"):
        assert topo.lsdb.knows(node)  # ...but still known
        peer = topo.get_peer(node)
        assert peer is not None
        assert peer.down_since == T
    assert topo.get_peer("pc2") is not None
    assert topo.get_peer("pc2").tools == ("echo",)  # type: ignore[union-attr]
    assert topo.get_peer("pc2").last_seen == 0.0  # type: ignore[union-attr]  # its last LSA came at 0
    assert topo.find_route("pc3") is None  # known but unreachable
    stats = topo.get_network_stats()
    assert stats.unreachable_nodes == 2
    assert stats.partitions == 3
    nodes = {n["id"]: n for n in topo.get_topology_graph().to_dict()["nodes"]}
    assert nodes["pc3"]["reachable"] is False
    assert nodes["pc3"]["down_since"] == T
    assert [name for name, _ in seen] == ["partition:detected"]

    # Hours later they are forgotten: said so, and still no heal.
    clock.advance(T + 60.0 + RETENTION + 1.0 - clock())
    topo.lsdb.originate((), (), (), 0.0, 1, clock())
    topo.expire()
    assert not topo.lsdb.knows("pc2")
    assert [name for name, _ in seen] == ["partition:detected", "partition:forgotten"]
    forgotten = seen[-1][1]
    assert forgotten["forgotten"] == ["pc2", "pc3"]
    assert forgotten["down_since"] == {"pc2": T, "pc3": T}
    assert topo.get_peer("pc2") is None


def test_a_real_heal_is_reported_with_the_nodes() -> None:
    """pc2 comes back after its LSA aged out: healed, naming pc2 and pc3."""
    clock = FakeClock(0.0)
    topo = line(clock)
    kill_pc2(topo, clock)
    clock.advance(100.0 - clock())
    topo.lsdb.originate((), (), (), 0.0, 1, clock())
    topo.expire()
    topo.update_topology()
    clock.advance(120.0 - clock())
    topo.lsdb.originate(links("pc2"), (), (), 0.0, 1, clock())
    events = topo.update_topology(
        [LSA("pc2", 5, links("pc1", "pc3")), LSA("pc3", 5, links("pc2"))]
    )
    assert names(events) == ["topology:updated", "partition:healed"]
    assert events[1].data == {"partitions": 1, "rejoined": ["pc2", "pc3"], "lost": []}
    assert topo.get_peer("pc3").down_since is None  # type: ignore[union-attr]
    assert topo.lsdb.retired_origins() == []


def test_partial_rejoin_is_not_a_heal() -> None:
    """pc2 back, pc3 still gone: partition:rejoined, not healed."""
    clock = FakeClock(0.0)
    topo = line(clock)
    kill_pc2(topo, clock)
    clock.advance(20.0 - clock())
    topo.lsdb.originate(links("pc2"), (), (), 0.0, 1, clock())
    events = topo.update_topology([LSA("pc2", 5, links("pc1"))])
    assert names(events) == ["topology:updated", "partition:rejoined"]
    assert events[1].data["rejoined"] == ["pc2"]
    assert events[1].data["unreachable"] == ["pc3"]


def test_core_style_tracker_with_hold() -> None:
    """As the broker core uses it: known origins from the database, reachable from
    the routing table, a 1 s hold; retired origins keep "known but unreachable"."""
    db = LinkStateDB("pc1", retention=RETENTION)
    table = RoutingTable(db)
    tracker = PartitionTracker("pc1", hold=1.0)
    db.originate(links("pc2"), (), (), 0.0, 1, 0.0)
    db.install_many([LSA("pc2", 1, links("pc1", "pc3")), LSA("pc3", 1, links("pc2"))], 0.0, "pc2")
    assert tracker.update(0.0, db.known_origins(), table.reachable()) == []
    db.originate((), (), (), 0.0, 1, T)
    assert tracker.update(T, db.known_origins(), table.reachable()) == []  # within the hold
    assert tracker.next_deadline() == T + 1.0
    events = tracker.update(T + 1.0, db.known_origins(), table.reachable())
    assert names(events) == ["partition:detected"]
    assert events[0].data["unreachable"] == ["pc2", "pc3"]
    for t in (40.0, 71.0, 90.0):
        db.originate((), (), (), 0.0, 1, t)
        db.expire(t)
        assert tracker.update(t, db.known_origins(), table.reachable()) == []
    assert db.knows("pc3") and table.next_hop("pc3") is None  # "known but unreachable"
    assert tracker.down_since("pc3") == T


def test_brief_split_within_the_hold_is_silent() -> None:
    """A node unreachable for less than the hold is never reported."""
    tracker = PartitionTracker("a", hold=1.0)
    assert tracker.update(0.0, ["a", "b"], {"b"}) == []
    assert tracker.update(1.0, ["a", "b"], set()) == []
    assert tracker.update(1.5, ["a", "b"], {"b"}) == []
    assert tracker.next_deadline() is None
    with pytest.raises(ValueError):
        PartitionTracker("a", hold=-1.0)


def test_retention_rules_in_the_database() -> None:
    """Retired LSAs: not stored, not flooded, known; replaced by a new LSA; bounded."""
    db = LinkStateDB("me", retention=100.0)
    assert db.retention == 100.0
    assert LinkStateDB("me").retention == DEFAULT_DOWN_RETENTION
    db.install(LSA("a", 1, links("me")), 0.0, "a")
    db.install(LSA("w", 1, ()), 0.0, "a")  # a withdrawal-like LSA: not retained
    assert sorted(db.expire(61.0)) == ["a", "w"]
    assert "a" not in db and db.knows("a") and not db.knows("w")
    retired = db.retired("a")
    assert retired is not None and retired[1] == 61.0
    assert db.known_origins() == ["a"]  # own LSA never originated here
    assert db.next_deadline() == pytest.approx(161.0)
    assert db.install(LSA("a", 2, links("me")), 70.0, "a")
    assert db.retired_origins() == []
    db.expire(131.0)
    version = db.topology_version
    db.expire(231.5)  # forgotten after retention: a topology change
    assert not db.knows("a") and db.topology_version == version + 1
    assert MAX_RETIRED >= 1
    with pytest.raises(ValueError):
        LinkStateDB("me", retention=float("inf"))
