"""The mesh logic of BrokerCore over an in-memory network with a fake clock."""

from __future__ import annotations

import itertools
import random

from operone_zmq.core.client import JobResult
from operone_zmq.errors import JobTimeout, NoRoute, ToolNotFound
from operone_zmq.routing.damping import RTT_WINDOW
from operone_zmq.testing import CoreMesh


def line(n: int) -> CoreMesh:
    m = CoreMesh()
    names = [chr(ord("a") + i) for i in range(n)]
    for x in names:
        m.add(x)
    for x, y in itertools.pairwise(names):
        m.dial(x, y)
    m.run()
    m.advance(2)
    return m


def test_two_nodes_link_up_with_events() -> None:
    """HELLO/WELCOME brings the link up on both sides, with peer:connected."""
    m = CoreMesh()
    m.add("a")
    m.add("b")
    m.dial("a", "b")
    m.run()
    assert m.nodes["a"].links["b"].up and m.nodes["b"].links["a"].up
    assert ("peer:connected", {"node": "b", "name": "b", "address": "mem://b"}) in \
        m.nodes["a"].events
    assert any(e[0] == "peer:connected" for e in m.nodes["b"].events)
    m.advance(0.5, step=0.05)  # LSA pacing and the SPF start delay are 50 ms each
    assert m.converged()


def test_job_runs_on_the_last_node_of_a_line() -> None:
    """A job from the first node of a line of 5 for the last runs there,
    relayed by the three in between, and its result comes back."""
    m = line(5)
    assert m.converged()
    m.add_worker("e", ["echo"])
    m.add_worker("a", ["echo"])
    m.run()
    jid = m.submit("a", "echo", {"x": 1}, on="e")
    m.run()
    res = m.replies("a")[jid]
    assert isinstance(res, JobResult)
    assert res.executed_on == "e" and res.value == {"node": "e", "args": {"x": 1}}
    assert [s.id for s in m.started["e"]] == [jid] and not m.started["a"]
    for relay in "bcd":
        assert m.nodes[relay].counters["relayed"] >= 2


def test_unknown_destination_and_unknown_tool_fail_fast() -> None:
    """No route is NoRoute at the origin; a tool missing on the target is
    ToolNotFound from the target."""
    m = line(3)
    m.add_worker("c", ["echo"])
    m.run()
    m.advance(5)  # past c's start: its workers have had time to register
    j1 = m.submit("a", "echo", on="zz")
    j2 = m.submit("a", "nope", on="c")
    m.run()
    r = m.replies("a")
    assert isinstance(r[j1], NoRoute) and "unknown node" in r[j1].message
    assert isinstance(r[j2], ToolNotFound) and r[j2].node == "c"


def test_prefers_lower_latency_path() -> None:
    """Dijkstra over measured RTTs: a slow direct link loses to two fast hops."""
    m = CoreMesh()
    for x in "abc":
        m.add(x)
    m.dial("a", "b")
    m.dial("b", "c")
    m.dial("a", "c")
    m.run()
    m.advance(2)
    # pretend measurements: a-c is slow
    for _ in range(RTT_WINDOW):  # the cost bands follow a full window of samples
        for x, y in (("a", "c"), ("c", "a")):
            m.nodes[x].links[y].record_rtt(50.0)
        for x, y in (("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")):
            m.nodes[x].links[y].record_rtt(1.0)
    for core in m.nodes.values():
        core._linkstate.mark_dirty()
    m.run()
    m.advance(0.2, step=0.05)  # LSA pacing and the SPF start delay
    route = m.nodes["a"].route_info("c")
    assert route["path"] == ["a", "b", "c"]
    assert route["total_latency"] == 2.0


def test_broker_death_reroutes_around_a_ring() -> None:
    """In a ring of 5, killing one broker moves routes to the other way round
    within 3 heartbeat intervals, and jobs still succeed."""
    m = CoreMesh()
    names = list("abcde")
    for x in names:
        m.add(x)
    for i, x in enumerate(names):
        m.dial(x, names[(i + 1) % 5])
    m.run()
    m.advance(2)
    m.add_worker("c", ["echo"])
    m.run()
    assert m.nodes["a"].route_info("c")["path"] == ["a", "b", "c"]
    m.kill("b")
    m.advance(3.5)  # liveness 3 x 1 s, plus a tick
    assert m.nodes["a"].route_info("c")["path"] == ["a", "e", "d", "c"]
    jid = m.submit("a", "echo", on="c")
    m.run()
    assert isinstance(m.replies("a")[jid], JobResult)
    assert any(e == ("peer:disconnected", {"node": "b", "reason": "no heartbeat for 3 s"})
               for e in m.nodes["a"].events)


def test_partition_detected_and_healed() -> None:
    """Cutting the only link between two halves raises partition:detected
    (once it lasts PARTITION_HOLD); restoring it raises partition:healed."""
    m = line(4)
    m.advance(2)
    m.nodes["a"].events.clear()
    m.cut("b", "c")
    m.advance(6)  # liveness (3 s), then PARTITION_HOLD (1 s)
    kinds = [e[0] for e in m.nodes["a"].events]
    assert kinds.count("partition:detected") == 1
    assert m.nodes["a"].routes.reachable() == {"b"}
    assert m.nodes["a"].network_stats()["partitions"] == 2
    m.heal("b", "c")
    m.advance(12)  # HELLO backoff
    assert m.converged()
    kinds = [e[0] for e in m.nodes["a"].events]
    assert kinds[-1] != "partition:detected" and "partition:healed" in kinds
    assert m.nodes["a"].network_stats()["partitions"] == 1


def test_no_partition_event_while_links_come_up() -> None:
    """A fresh mesh converging raises no partition events."""
    m = line(5)
    m.advance(3)
    for core in m.nodes.values():
        assert not [e for e in core.events if e[0].startswith("partition:")]


def test_peer_claiming_another_nodes_id_is_refused() -> None:
    """A broker whose key is not the claimed node's key gets BYE, no link."""
    m = CoreMesh()
    m.add("a")
    m.add("mallory", impostor_of="a")
    m.add("b")
    m.dial("a", "b")
    m.run()
    m.dial("mallory", "b")
    m.run()
    b = m.nodes["b"]
    assert b.counters["peers_refused"] >= 1
    assert any(e[0] == "peer:refused" for e in b.events)
    assert "mallory" not in b.links
    assert b.links["a"].up


def test_max_peers_refuses_with_a_reason() -> None:
    """Past max_peers a HELLO is refused, saying why."""
    from operone_zmq.core.broker import BrokerLimits

    m = CoreMesh(BrokerLimits(max_peers=1))
    for x in "abc":
        m.add(x)
    m.dial("a", "c")
    m.dial("b", "c")
    m.run()
    refused = [e for e in m.nodes["c"].events if e[0] == "peer:refused"]
    assert refused and "max_peers" in refused[0][1]["reason"]
    assert "max_peers" in m.nodes["b"].links["c"].last_error


def test_broadcast_reaches_every_node_exactly_once() -> None:
    """A broadcast in a meshy topology is delivered once per node."""
    m = CoreMesh()
    names = list("abcde")
    for x in names:
        m.add(x)
    for x, y in ("ab", "bc", "cd", "de", "ea", "ac", "bd"):
        m.dial(x, y)
    m.run()
    m.advance(2)
    c = m.client("a")
    from operone_zmq.protocol import Header, MsgType, encode, pack_value

    frames = encode(Header(int(MsgType.BROADCAST), "bc-1", c.client_id, "", 8, 0, 2, None),
                    pack_value({"type": "notification", "data": "hi"}))
    m.send_client("a", frames)
    m.run()
    for x in names:
        got = [b for b in m.nodes[x].broadcasts if b["id"] == "bc-1"]
        assert len(got) == 1, x
        assert got[0]["data"] == {"type": "notification", "data": "hi"}


def test_restarted_broker_rejoins() -> None:
    """A broker that restarts (new core, same id) is linked and routed again."""
    m = line(3)
    m.kill("c")
    m.advance(4)
    assert "c" not in m.nodes["a"].routes.reachable()
    m.dead.discard("c")
    m.add("c")  # a new incarnation: empty state, fresh sequence numbers
    m.advance(12)
    assert m.converged()


def test_forwarded_job_times_out_at_the_origin() -> None:
    """If the target never answers, the origin answers JobTimeout."""
    m = CoreMesh(auto_echo=False)
    for x in "ab":
        m.add(x)
    m.dial("a", "b")
    m.run()
    m.add_worker("b", ["sleep"])
    m.run()
    jid = m.submit("a", "sleep", timeout=2.0, on="b")
    m.run()
    m.cut("a", "b")  # replies are lost
    m.advance(1.0)
    m.heal("a", "b")
    m.advance(3.0)
    r = m.replies("a")
    assert isinstance(r[jid], JobTimeout | NoRoute)


def test_hundred_nodes_random_topologies_converge() -> None:
    """100 nodes in random connected topologies converge; a cut link reroutes."""
    for seed in (1, 2):
        rng = random.Random(seed)
        m = CoreMesh()
        names = [f"n{i:03d}" for i in range(100)]
        for x in names:
            m.add(x)
        edges = set()
        for i in range(1, 100):  # a random tree keeps it connected
            j = rng.randrange(i)
            edges.add((names[i], names[j]))
        while len(edges) < 200:
            a, b = rng.sample(names, 2)
            if (a, b) not in edges and (b, a) not in edges:
                edges.add((a, b))
        for a, b in edges:
            m.dial(a, b)
        m.run()
        m.advance(2)
        assert m.converged()
        # cut a link on some route and check the routes move
        src, dst = names[0], names[99]
        path = m.nodes[src].route_info(dst)["path"]
        m.cut(path[0], path[1])
        m.advance(4)
        new = m.nodes[src].route_info(dst)
        assert new["reachable"] and new["path"][:2] != path[:2]
