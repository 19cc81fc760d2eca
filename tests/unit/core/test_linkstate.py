"""LinkState: origination, acceptance of LSAs, SPF scheduling."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.linkstate import LSA_MIN_INTERVAL, SPF_DELAY
from operone_zmq.core.peers import PeerLink
from operone_zmq.protocol.bodies import pack_lsas


def test_dirty_state_is_originated_at_most_once_per_interval() -> None:
    p = Parts()
    assert p.linkstate.dirty
    p.linkstate.poll(p.clock())
    assert not p.linkstate.dirty
    first = p.linkstate.lsdb.get("n1")
    assert first is not None
    p.ready(b"w1", ["echo"])
    assert p.linkstate.dirty
    p.linkstate.poll(p.clock())
    assert p.linkstate.lsdb.get("n1") is first  # within LSA_MIN_INTERVAL
    assert p.linkstate.next_deadline(float("inf")) <= p.clock() + LSA_MIN_INTERVAL
    p.clock.advance(LSA_MIN_INTERVAL)
    p.linkstate.poll(p.clock())
    lsa = p.linkstate.lsdb.get("n1")
    assert lsa is not None and lsa.seq > first.seq and "echo" in lsa.tools


def test_a_legacy_host_gets_its_own_lsa() -> None:
    p = Parts()
    p.legacy.add("old", 2)
    p.linkstate.poll(p.clock())
    lsa = p.linkstate.lsdb.get("old")
    assert lsa is not None and lsa.kind == "ssh" and "ssh" in lsa.capabilities


def test_unreadable_lsas_are_counted() -> None:
    p = Parts()
    p.linkstate.on_lsa(PeerLink("n2"), b"\xc1", p.clock())
    assert p.ctx.counters["malformed"] == 1


def test_topology_changes_are_reacted_to_after_the_spf_delay() -> None:
    p = Parts()
    p.linkstate.poll(p.clock())  # our first LSA moves the topology version
    assert not any(e[0] == "topology:updated" for e in p.core.events)
    p.clock.advance(SPF_DELAY)
    p.linkstate.poll(p.clock())
    assert [e for e in p.core.events if e[0] == "topology:updated"] == [
        ("topology:updated", {"nodes": 1})]


def test_route_to_self_and_unknown() -> None:
    p = Parts()
    assert p.linkstate.route_info("n1")["hops"] == 0
    assert p.linkstate.route_info("n9") == {"destination": "n9", "reachable": False,
                                            "known": False}


def test_an_lsa_whose_origin_is_not_a_name_is_counted_and_the_rest_installed() -> None:
    """A neighbour's LSA with a list, map, None or number as origin: counted
    as malformed, and the other LSAs of the same message still installed.
    (A list raised TypeError out of on_lsa, losing the whole message; in the
    compiled build None did too.)"""
    p = Parts()
    p.linkstate.poll(p.clock())
    own = p.linkstate.lsdb.get("n1")
    assert own is not None
    good = {**own.to_wire(), "origin": "n9", "seq": 1, "links": [], "public_key": ""}
    bad = [{**good, "origin": origin} for origin in ([1], {"a": 1}, None, 7)]
    p.linkstate.on_lsa(PeerLink("n2"), pack_lsas([*bad, good]), p.clock())
    assert p.ctx.counters["malformed"] == len(bad)
    assert p.linkstate.lsdb.get("n9") is not None
