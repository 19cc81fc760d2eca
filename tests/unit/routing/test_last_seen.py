"""``get_peer(n).last_seen`` when the broker installs LSAs into the shared database itself."""

from __future__ import annotations

from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.routing.lsdb import LinkStateDB
from operone_zmq.routing.topology import NetworkTopology, PeerInfo
from operone_zmq.testing import FakeClock


def _lsa(origin: str, seq: int, *links: str, max_age: float = 60.0) -> LSA:
    return LSA(origin, seq, tuple(LinkInfo(n, 1.0) for n in links), max_age=max_age)


def test_lsas_installed_around_the_topology_set_last_seen() -> None:
    db = LinkStateDB("local")
    topo = NetworkTopology("local", FakeClock(1000.0), lsdb=db)
    db.originate([LinkInfo("a", 1.0)], [], [], 0.0, 1, now=5.0)
    # The broker's path: install_many straight into the shared database.
    db.install_many([_lsa("a", 1, "local", "b"), _lsa("b", 1, "a")], 10.0, "a")  # bulk path
    pa, pb = topo.get_peer("a"), topo.get_peer("b")
    assert pa is not None and pb is not None
    assert (pa.last_seen, pb.last_seen) == (10.0, 10.0)
    db.install_many([_lsa("a", 2, "local", "b")], 17.5, "a")  # per-LSA path: newer seq
    db.install_many([_lsa("b", 1, "a")], 30.0, "a")  # a duplicate is not news of b
    pa, pb = topo.get_peer("a"), topo.get_peer("b")
    assert pa is not None and pb is not None
    assert (pa.last_seen, pb.last_seen) == (17.5, 10.0)
    assert db.installed_at("local") is None and db.installed_at("zz") is None


def test_expired_and_owned_origins_forget_the_time() -> None:
    db = LinkStateDB("local")
    db.install(_lsa("a", 1, max_age=5.0), 1.0)
    assert db.installed_at("a") == 1.0
    assert db.expire(100.0) == ["a"]
    assert db.installed_at("a") is None
    db.install(_lsa("h", 1), 2.0)
    db.originate([], ["shell"], [], 0.0, 1, now=3.0, origin="h", kind="ssh")
    assert db.installed_at("h") is None


def test_a_direct_peer_takes_the_later_of_add_peer_and_its_lsa() -> None:
    clock = FakeClock(50.0)
    topo = NetworkTopology("local", clock)
    topo.add_peer(PeerInfo("p", latency=1.0))
    topo.lsdb.install(_lsa("p", 1, "local"), 80.0)
    p = topo.get_peer("p")
    assert p is not None and p.last_seen == 80.0
