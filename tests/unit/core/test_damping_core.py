"""Issue 9 items 5 and 7 in the broker core: damped link state, honest partitions."""

from __future__ import annotations

from itertools import pairwise

from operone_zmq.core.broker import BrokerCore, BrokerLimits
from operone_zmq.core.peers import PeerLink
from operone_zmq.errors import NoRoute
from operone_zmq.protocol.bodies import Ping
from operone_zmq.routing.damping import MIN_LS_INTERVAL
from operone_zmq.testing import CoreMesh


def _pong(core: BrokerCore, link: PeerLink, rtt_ms: float, now: float, seq: int) -> None:
    """A PONG for a PING sent ``rtt_ms`` ago arrives (what the shell would feed in)."""
    link.pings[seq] = now - rtt_ms / 1000.0
    core._links._on_pong(link, Ping(seq).pack(), now)


def _line(*names: str, limits: BrokerLimits | None = None) -> CoreMesh:
    m = CoreMesh(limits)
    for x in names:
        m.add(x)
    for x, y in pairwise(names):
        m.dial(x, y)
    m.run()
    m.advance(2, step=0.05)
    assert m.converged()
    return m


def test_rtt_wobble_within_a_band_costs_no_lsa() -> None:
    """A loaded machine's RTTs wander between 1 and 18 ms: the band stays at
    1 ms and nothing is re-originated but the periodic refresh."""
    m = _line("a", "b")
    a = m.nodes["a"]
    link = a.links["b"]
    seq0 = a.lsdb.get("a").seq  # type: ignore[union-attr]
    for i in range(60):  # one minute of heartbeats
        m.clock.advance(1.0)
        _pong(a, link, 2.0 if i % 2 else 18.0, m.clock(), 10_000 + i)
        a.poll(m.clock())
    originated = a.lsdb.get("a").seq - seq0  # type: ignore[union-attr]
    assert originated <= 3  # the refreshes (every 20 s) only
    assert link.cost == 1.0


def test_a_real_slowdown_is_advertised_once_at_the_paced_rate() -> None:
    m = _line("a", "b")
    a = m.nodes["a"]
    link = a.links["b"]
    seq0 = a.lsdb.get("a").seq  # type: ignore[union-attr]
    t0 = m.clock()
    for i in range(12):
        m.clock.advance(0.5)
        _pong(a, link, 60.0 + i % 3, m.clock(), 20_000 + i)
        a.poll(m.clock())
    assert link.cost == 50.0
    assert a.lsdb.get("a").seq - seq0 == 1  # type: ignore[union-attr]
    lsa = a.lsdb.get("a")
    assert lsa is not None and [ln.cost for ln in lsa.links] == [50.0]
    assert m.clock() - t0 <= MIN_LS_INTERVAL + 1.5


def test_a_stall_of_our_own_loop_is_not_a_neighbours_silence() -> None:
    """The broker did not run for 4 s (longer than the 3 s liveness): its
    neighbour was not silent, it was not listening."""
    m = _line("a", "b")
    m.advance(4.0, step=4.0)
    assert m.nodes["a"].links["b"].up and m.nodes["b"].links["a"].up
    assert not any(e[0] == "peer:disconnected" for e in m.nodes["a"].events)


def test_a_dead_node_stays_known_down_since_and_no_heal_is_claimed() -> None:
    """a-b-c, b dies: b and c stay known as down (errors say "known but
    unreachable"), the partition names them, and when their LSAs age out
    nothing is reported healed; after the retention they are forgotten."""
    m = _line("a", "b", "c", limits=BrokerLimits(peer_interval=1.0, peer_liveness=3,
                                                 down_retention=120.0))
    a = m.nodes["a"]
    m.add_worker("c", ["work"])
    m.advance(1, step=0.05)
    a.events.clear()
    m.kill("b")
    m.advance(90, step=0.5)  # LSAs of b and c (max age 60 s) have expired
    names = [e[0] for e in a.events]
    detected = [p for n, p in a.events if n == "partition:detected"]
    assert detected and detected[0]["unreachable"] == ["b", "c"]
    assert set(detected[0]["down_since"]) == {"b", "c"}
    assert "partition:healed" not in names
    assert "b" not in a.lsdb and a.lsdb.knows("c")
    info = a.route_info("c")
    assert info["reachable"] is False and info["known"] is True
    assert isinstance(info["down_since"], float)
    jid = m.submit("a", "work", on="c")
    m.run()
    err = m.replies("a")[jid]
    assert isinstance(err, NoRoute) and "known but unreachable" in str(err)
    m.advance(130, step=1.0)  # past the retention
    names = [e[0] for e in a.events]
    assert "partition:forgotten" in names and "partition:healed" not in names
    assert not a.lsdb.knows("c")
