"""ToolRouter: placement by tool, capabilities, load, cost and health."""

from __future__ import annotations

from collections import Counter

from operone_zmq.jobs.router import NodeInfo, ToolRouter


def n(node: str, tools: str = "echo", caps: str = "", **kw: object) -> NodeInfo:
    return NodeInfo(node, frozenset(tools.split(",")), frozenset(c for c in caps.split(",") if c),
                    **kw)  # type: ignore[arg-type]


def test_only_nodes_with_the_tool_and_capabilities_qualify() -> None:
    """gpu jobs go to the gpu node; a missing tool or capability says why."""
    r = ToolRouter()
    nodes = [n("a"), n("b", caps="gpu"), n("c", tools="other")]
    assert r.route("echo", ["gpu"], nodes).node == "b"
    none = r.route("render", [], nodes)
    assert none.node is None and "no node offers tool 'render'" in none.reason
    nocap = r.route("echo", ["tpu"], nodes)
    assert nocap.node is None and "capabilities ['tpu']" in nocap.reason


def test_unreachable_and_workerless_nodes_do_not_qualify() -> None:
    """A node must be reachable and have workers."""
    r = ToolRouter()
    d = r.route("echo", [], [n("a", reachable=False), n("b", workers=0)])
    assert d.node is None and "unreachable" in d.reason


def test_lower_load_cost_and_better_health_win() -> None:
    """Each term of the score moves the choice."""
    r = ToolRouter()
    assert r.route("echo", [], [n("a", load=0.9), n("b", load=0.1)]).node == "b"
    assert r.route("echo", [], [n("a", cost_ms=80.0), n("b", cost_ms=1.0)]).node == "b"
    assert r.route("echo", [], [n("a", health=40.0), n("b", health=100.0)]).node == "b"


def test_ties_are_broken_by_node_id() -> None:
    """Equal scores: the smaller id, so every broker decides the same."""
    r = ToolRouter()
    assert r.route("echo", [], [n("z"), n("m"), n("q")]).node == "m"


def test_in_flight_jobs_spread_placements() -> None:
    """Placing 300 jobs while counting them in flight spreads them evenly."""
    r = ToolRouter()
    nodes = [n("a", workers=2), n("b", workers=2), n("c", workers=2)]
    flights: Counter[str] = Counter()
    for _ in range(300):
        d = r.route("echo", [], nodes, in_flight=flights)
        assert d.node is not None
        flights[d.node] += 1
    assert max(flights.values()) - min(flights.values()) <= 1


def test_prefer_local_and_fallback_to_local() -> None:
    """prefer_local picks this node when it qualifies; with no other node,
    the local one is the fallback, and the reason says so."""
    r = ToolRouter()
    nodes = [n("me", local=True, load=0.9), n("other")]
    assert r.route("echo", [], nodes).node == "other"
    d = r.route("echo", [], nodes, prefer_local=True)
    assert d.node == "me" and d.local and "prefer_local" in d.reason
    only = r.route("echo", [], [n("me", local=True), n("x", tools="other")])
    assert only.node == "me" and "fallback to local" in only.reason


def test_excluded_nodes_are_avoided_while_others_qualify() -> None:
    """A retry goes to a node not yet tried; if all were tried, any will do."""
    r = ToolRouter()
    nodes = [n("a"), n("b")]
    assert r.route("echo", [], nodes, exclude=["a"]).node == "b"
    d = r.route("echo", [], nodes, exclude=["a", "b"])
    assert d.node == "a" and "tried already" in d.reason
