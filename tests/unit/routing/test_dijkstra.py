"""Shortest paths on hand-drawn graphs, the both-ends rule and the lazy routing table."""

from __future__ import annotations

import itertools
import random

import pytest

from operone_zmq.routing.dijkstra import Graph, RoutingTable, shortest_paths
from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.routing.lsdb import LinkStateDB


def lsa(origin: str, *links: tuple[str, float], seq: int = 1) -> LSA:
    """An LSA advertising links to the given (neighbour, cost) pairs."""
    return LSA(origin, seq, tuple(LinkInfo(n, c) for n, c in links))


def test_direct_route() -> None:
    """A neighbour is reached in one hop at the link's cost."""
    paths = shortest_paths(Graph.from_edges([("a", "b", 5.0)]), "a")
    assert paths["b"].next_hop == "b"
    assert paths["b"].hops == 1
    assert paths["b"].cost == pytest.approx(5.0)
    assert paths["b"].path == ("a", "b")
    assert paths["b"].destination == "b"
    assert "a" not in paths


def test_multi_hop_sums_latency() -> None:
    """A chain a-b-c-d costs the sum of its links and forwards to b."""
    graph = Graph.from_edges([("a", "b", 1.0), ("b", "c", 2.5), ("c", "d", 4.0)])
    info = shortest_paths(graph, "a")["d"]
    assert info.path == ("a", "b", "c", "d")
    assert info.next_hop == "b"
    assert info.hops == 3
    assert info.cost == pytest.approx(7.5)


def test_prefers_lower_latency_multi_hop_over_slow_direct_link() -> None:
    """Two fast hops beat one slow direct link."""
    graph = Graph.from_edges([("a", "c", 100.0), ("a", "b", 10.0), ("b", "c", 10.0)])
    info = shortest_paths(graph, "a")["c"]
    assert info.path == ("a", "b", "c")
    assert info.cost == pytest.approx(20.0)


def test_unreachable_node_is_absent() -> None:
    """A node in another component has no path."""
    graph = Graph.from_edges([("a", "b", 1.0), ("c", "d", 1.0)], nodes=["e"])
    paths = shortest_paths(graph, "a")
    assert set(paths) == {"b"}
    assert shortest_paths(graph, "zzz") == {}


def test_equal_cost_prefers_fewer_hops() -> None:
    """At equal cost the path with fewer hops wins."""
    graph = Graph.from_edges([("a", "d", 3.0), ("a", "b", 1.0), ("b", "c", 1.0), ("c", "d", 1.0)])
    assert shortest_paths(graph, "a")["d"].path == ("a", "d")


def test_equal_cost_and_hops_prefers_smaller_path() -> None:
    """At equal cost and hops the smaller path wins, whatever the insertion order."""
    edges = [("s", "x", 1.0), ("s", "b", 1.0), ("x", "t", 1.0), ("b", "t", 1.0)]
    for perm in itertools.permutations(edges):
        assert shortest_paths(Graph.from_edges(perm), "s")["t"].path == ("s", "b", "t")


def test_tie_break_compares_whole_paths() -> None:
    """Two equal paths through different first hops: the smaller first hop wins even if
    the node just before the destination is larger."""
    # s-a-z-t and s-b-c-t, all costs equal: ("s","a","z","t") < ("s","b","c","t")
    graph = Graph.from_edges(
        [("s", "a", 1), ("a", "z", 1), ("z", "t", 1), ("s", "b", 1), ("b", "c", 1), ("c", "t", 1)]
    )
    assert shortest_paths(graph, "s")["t"].path == ("s", "a", "z", "t")


def test_every_node_agrees_on_subpaths() -> None:
    """On a tie-heavy grid, each node's choice to d is the suffix of its predecessor's choice."""
    edges = []
    for x, y in itertools.product(range(5), range(5)):
        if x < 4:
            edges.append((f"{x}{y}", f"{x + 1}{y}", 1.0))
        if y < 4:
            edges.append((f"{x}{y}", f"{x}{y + 1}", 1.0))
    graph = Graph.from_edges(edges)
    tables = {n: shortest_paths(graph, n) for n in graph.nodes}
    for source, dest in itertools.permutations(graph.nodes, 2):
        path = tables[source][dest].path
        for i in range(1, len(path) - 1):
            assert tables[path[i]][dest].path == path[i:]


def test_costs_are_quantised_to_microseconds() -> None:
    """Sums are exact: 0.1 + 0.2 equals 0.3 for tie-breaking purposes."""
    graph = Graph.from_edges([("a", "b", 0.1), ("b", "c", 0.2), ("a", "c", 0.3)])
    assert shortest_paths(graph, "a")["c"].path == ("a", "c")


def test_zero_cost_links_still_cost_something() -> None:
    """A 0 ms link counts as one microsecond, so fewer such hops win."""
    graph = Graph.from_edges([("a", "b", 0.0), ("b", "c", 0.0), ("a", "c", 0.0)])
    assert shortest_paths(graph, "a")["c"].path == ("a", "c")


# ------------------------------------------------------------- both-ends rule
def test_one_sided_link_is_ignored() -> None:
    """A link only one end advertises is not in the graph."""
    graph = Graph.from_lsas([lsa("a", ("b", 1.0), ("c", 1.0)), lsa("b", ("a", 1.0)), lsa("c")])
    assert graph.edge("a", "b") is not None
    assert graph.edge("a", "c") is None
    assert "c" in graph
    assert set(shortest_paths(graph, "a")) == {"b"}


def test_link_to_node_without_lsa_is_ignored() -> None:
    """A neighbour with no LSA is not a node."""
    graph = Graph.from_lsas([lsa("a", ("ghost", 1.0))])
    assert graph.nodes == ["a"]


def test_link_cost_is_the_larger_advertised_cost() -> None:
    """The two ends' costs merge to the max; bandwidth to the smaller known; loss to the max."""
    a = LSA("a", 1, (LinkInfo("b", 2.0, 100.0, 0.01),))
    b = LSA("b", 1, (LinkInfo("a", 5.0, 0.0, 0.05),))
    edge = Graph.from_lsas([a, b]).edge("b", "a")
    assert edge is not None
    assert (edge.a, edge.b, edge.cost, edge.bandwidth, edge.loss) == ("a", "b", 5.0, 100.0, 0.05)


def test_graph_edges_can_be_replaced_and_removed() -> None:
    """add_edge replaces an existing edge; remove_edge deletes it both ways."""
    graph = Graph.from_edges([("a", "b", 1.0)])
    graph.add_edge("b", "a", 7.0)
    assert shortest_paths(graph, "a")["b"].cost == pytest.approx(7.0)
    assert graph.remove_edge("a", "b")
    assert not graph.remove_edge("a", "b")
    assert graph.neighbors("a") == []
    with pytest.raises(ValueError):
        graph.add_edge("a", "a", 1.0)


def test_components() -> None:
    """Components are listed largest first, each sorted."""
    graph = Graph.from_edges([("c", "d", 1.0), ("a", "b", 1.0), ("b", "e", 1.0)], nodes=["z"])
    assert graph.components() == [["a", "b", "e"], ["c", "d"], ["z"]]


# ------------------------------------------------------------- routing table
def test_routing_table_recomputes_only_on_topology_change() -> None:
    """Lookups are cached until the database's topology_version moves."""
    db = LinkStateDB("a")
    db.originate([LinkInfo("b", 1.0)], [], [], 0.0, 1, now=0.0)
    table = RoutingTable(db)
    assert table.next_hop("b") is None  # b has not confirmed the link yet
    db.install(lsa("b", ("a", 1.0), ("c", 1.0)), 0.0, "b")
    db.install(lsa("c", ("b", 1.0)), 0.0, "b")
    assert table.next_hop("c") == "b"
    route = table.route("c")
    assert route is not None
    assert route.path == ("a", "b", "c")
    assert table.reachable() == {"b", "c"}
    assert table.source == "a"
    count = table.computations
    table.next_hop("b")
    db.install(LSA("c", 2, (LinkInfo("b", 1.0),), load=5.0), 0.0, "b")  # load only
    table.next_hop("b")
    assert table.computations == count
    db.install(lsa("c", seq=3), 0.0, "b")  # c drops its link
    assert table.next_hop("c") is None
    assert table.computations == count + 1
    assert table.next_hop("a") is None
    assert table.route("a") is None


def test_random_graphs_match_brute_force() -> None:
    """On random small graphs, the cost equals Floyd-Warshall's and the path is valid."""
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(2, 12)
        nodes = [f"n{i}" for i in range(n)]
        edges = {}
        for a, b in itertools.combinations(nodes, 2):
            if rng.random() < 0.35:
                edges[a, b] = float(rng.randint(1, 5))
        graph = Graph.from_edges([(a, b, c) for (a, b), c in edges.items()], nodes=nodes)
        inf = float("inf")
        dist = {(a, b): 0.0 if a == b else inf for a in nodes for b in nodes}
        for (a, b), c in edges.items():
            dist[a, b] = dist[b, a] = c
        for k, i, j in itertools.product(nodes, nodes, nodes):
            dist[i, j] = min(dist[i, j], dist[i, k] + dist[k, j])
        for source in nodes:
            paths = shortest_paths(graph, source)
            for dest in nodes:
                if dest == source:
                    continue
                if dist[source, dest] == inf:
                    assert dest not in paths
                    continue
                info = paths[dest]
                assert info.cost == pytest.approx(dist[source, dest])
                total = sum(
                    edges.get((a, b), edges.get((b, a), inf))
                    for a, b in itertools.pairwise(info.path)
                )
                assert total == pytest.approx(info.cost)
                assert info.hops == len(info.path) - 1
                assert info.next_hop == info.path[1]
