"""The in-memory flooding simulator: convergence, rerouting, failures, partitions, restarts."""

from __future__ import annotations

import random

import pytest

from operone_zmq.routing.sim import Simulator, node_ids, random_topology
from operone_zmq.routing.topology import NetworkTopology
from operone_zmq.testing import FakeClock


def two_clusters(size: int, seed: int) -> tuple[list[str], list[tuple[str, str]], tuple[str, str]]:
    """Two random clusters joined by a single bridge link; return nodes, edges, bridge."""
    left_nodes, left = random_topology(size, 3.0, seed=seed)
    right_ids = [f"r{i:04d}" for i in range(size)]
    _, right_raw = random_topology(size, 3.0, seed=seed + 1)
    rename = dict(zip(node_ids(size), right_ids, strict=True))
    right = [(rename[a], rename[b]) for a, b in right_raw]
    bridge = (left_nodes[0], right_ids[0])
    return left_nodes + right_ids, [*left, *right, bridge], bridge


def test_random_topology_is_connected_and_seeded() -> None:
    """The generator gives connected graphs of the requested size, reproducibly."""
    nodes, edges = random_topology(200, 4.0, seed=3)
    assert len(nodes) == 200
    assert len(edges) == 400
    assert random_topology(200, 4.0, seed=3) == (nodes, edges)
    sim = Simulator(nodes, edges)
    assert len(sim.components()) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hundred_nodes_converge(seed: int) -> None:
    """100 nodes in a random mesh agree on every LSA and forward hop by hop consistently."""
    sim = Simulator.random(100, 4.0, seed=seed)
    report = sim.start()
    assert report.converged
    assert sim.converged()
    assert 0 < report.convergence_time < 1.0
    assert report.lsas_per_node >= 99  # every LSA crosses at least a spanning tree
    for node in sim.nodes.values():
        assert len(node.lsdb) == 100
        assert node.table.reachable() == set(sim.nodes) - {node.id}
    sim.check_forwarding(sim.sample_pairs(200))


def test_cut_link_reroutes() -> None:
    """Cutting a link that a route uses moves the route elsewhere, everywhere."""
    sim = Simulator.random(100, 4.0, seed=5, detect_delay=0.05)
    sim.start()
    rng = random.Random(5)
    nodes = sorted(sim.nodes)
    cuts = 0
    for _ in range(5):
        source, dest = rng.sample(nodes, 2)
        route = sim.nodes[source].table.route(dest)
        assert route is not None
        a, b = route.path[0], route.path[1]
        if len(sim.nodes[a].neighbors) == 1 or len(sim.nodes[b].neighbors) == 1:
            continue  # cutting would isolate a leaf; that is the partition test
        report = sim.cut_link(a, b)
        cuts += 1
        assert report.converged
        assert report.convergence_time >= 0.05  # nothing happens before detection
        new_route = sim.nodes[source].table.route(dest)
        if new_route is not None:
            assert (a, b) not in zip(new_route.path, new_route.path[1:], strict=False)
            sim.check_forwarding([(source, dest)])
    assert cuts >= 3
    sim.check_forwarding(sim.sample_pairs(100))


def test_killed_node_is_routed_around_and_ages_out() -> None:
    """Survivors stop routing through a dead node at once and forget it after max_age."""
    sim = Simulator.random(100, 4.0, seed=8, max_age=10.0)
    sim.start()
    victim = max(sim.nodes, key=lambda n: len(sim.nodes[n].neighbors))
    report = sim.kill_node(victim)
    assert report.converged
    alive = [n for n in sim.nodes.values() if n.alive]
    for node in alive:
        assert victim not in node.table.reachable()
        assert victim in node.lsdb  # still stored until it ages out
    sim.check_forwarding(sim.sample_pairs(100))
    sim.advance(25.0)  # refreshes flood; the dead node's LSA is never refreshed
    assert all(victim not in node.lsdb for node in alive)
    assert sim.converged()


def test_partition_detected_and_healed() -> None:
    """Cutting the only bridge splits the mesh (events fire) and restoring it heals it."""
    nodes, edges, (left, right) = two_clusters(50, seed=11)
    sim = Simulator(nodes, edges, seed=11)
    assert sim.start().converged
    observer = sim.nodes[left]
    topo = NetworkTopology(left, FakeClock(), lsdb=observer.lsdb)
    seen: list[str] = []
    topo.on("partition:detected", lambda data: seen.append(f"detected {data['partitions']}"))
    topo.on("partition:healed", lambda data: seen.append(f"healed {len(data['rejoined'])}"))
    assert topo.get_network_stats().partitions == 1

    report = sim.cut_link(left, right)
    assert report.converged
    assert len(sim.components()) == 2
    topo.update_topology()
    assert seen == ["detected 2"]
    assert len(topo.get_reachable_peers()) == 49
    stats = topo.get_network_stats()
    assert (stats.partitions, stats.unreachable_nodes) == (2, 50)

    report = sim.add_link(left, right)
    assert report.converged
    topo.update_topology()
    assert seen == ["detected 2", "healed 50"]
    assert len(topo.get_reachable_peers()) == 99
    sim.check_forwarding([(nodes[10], nodes[-10]), (nodes[-3], nodes[3])])


def test_healed_partition_converges_after_divergence() -> None:
    """Changes made on each side while split reach the other side after the heal."""
    nodes, edges, (left, right) = two_clusters(30, seed=21)
    sim = Simulator(nodes, edges, seed=21)
    sim.start()
    sim.cut_link(left, right)
    # Each side changes while split.
    sim.cut_link(*next(e for e in edges if e[0].startswith("n") and left not in e))
    sim.cut_link(*next(e for e in edges if e[0].startswith("r") and right not in e))
    report = sim.add_link(left, right)
    assert report.converged
    assert sim.converged()


def test_restarted_node_supersedes_its_previous_incarnation() -> None:
    """A node restarting at a lower seq sees its old LSA come back and jumps past it."""
    sim = Simulator.random(60, 4.0, seed=4)
    sim.start()
    victim = "n0007"
    for _ in range(3):  # bump its seq a few times: flap one of its links
        neighbor = min(sim.nodes[victim].neighbors)
        sim.cut_link(victim, neighbor)
        sim.add_link(victim, neighbor)
    before = sim.nodes[victim].lsdb.get(victim)
    assert before is not None
    assert before.seq > 1
    sim.kill_node(victim)
    report = sim.restart_node(victim, initial_seq=1)
    assert report.converged
    restarted = sim.nodes[victim].lsdb
    assert restarted.self_seq_floor >= before.seq
    own = restarted.get(victim)
    assert own is not None
    assert own.seq > before.seq
    for node in sim.nodes.values():
        assert node.lsdb.get(victim) is own
    sim.check_forwarding([(victim, "n0050"), ("n0050", victim)])


def test_pacing_zero_and_message_counts() -> None:
    """Without pacing every accepted LSA is its own message; pacing batches them."""
    unpaced = Simulator.random(50, 4.0, seed=2, pacing=0.0).start()
    paced = Simulator.random(50, 4.0, seed=2, pacing=0.01).start()
    assert unpaced.converged
    assert paced.converged
    assert paced.messages_per_node < unpaced.messages_per_node
    assert paced.lsas_per_node <= unpaced.lsas_per_node
    assert "converged" in paced.summary()
