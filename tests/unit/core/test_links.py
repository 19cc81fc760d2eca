"""PeerLinks: handshakes, session messages and QoS queues."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.core.peers import incarnation_id, node_of_rid, superseded
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import Bye, Hello, Ping


def _hello(p: Parts, node: str = "n2", uid: str | None = "key2") -> None:
    h = Header(int(MsgType.HELLO), "h1", node, "n1", 8, 0, 0, None)
    frames = [node.encode(), TAG, encode_header(h), Hello(node).pack()]
    p.links.on_router(0, node.encode(), uid, frames, p.clock())


def _accepting() -> Parts:
    return Parts(authorize=lambda node, key, token: None if key == "key2" else "untrusted")


def test_hello_without_an_authorizer_is_refused() -> None:
    p = Parts()
    _hello(p)
    ((_, frames),) = p.take()
    msg = decode(frames, 1)
    assert msg.header.type == MsgType.BYE and Bye.unpack(msg.body).code == "refused"
    assert p.ctx.counters["peers_refused"] == 1
    assert p.links.up_nodes() == []


def test_an_accepted_hello_brings_the_link_up() -> None:
    p = _accepting()
    _hello(p)
    assert MsgType.WELCOME in p.types(p.take())
    assert p.links.up_nodes() == ["n2"]
    assert ("peer:connected", {"node": "n2", "name": "n2", "address": ""}) in p.core.events
    assert p.linkstate.dirty


def test_a_ping_is_answered_and_another_key_is_refused() -> None:
    p = _accepting()
    _hello(p)
    p.take()
    h = Header(int(MsgType.PING), "p1", "n2", "n1", 8, 0, 0, None)
    frames = [b"n2", TAG, encode_header(h), Ping(1).pack()]
    p.links.on_router(0, b"n2", "key2", frames, p.clock())
    assert p.types(p.take()) == [MsgType.PONG]
    p.links.on_router(0, b"n2", "other", frames, p.clock())
    assert p.take() == []
    assert p.ctx.counters["peer_key_mismatch"] == 1


def test_silence_takes_the_link_down() -> None:
    p = _accepting()
    _hello(p)
    limits = p.ctx.limits
    p.clock.advance(limits.peer_liveness * limits.peer_interval + 0.1)
    p.links.tick(p.clock())
    assert p.links.up_nodes() == []
    assert p.core.events[-1][0] == "peer:disconnected"


def test_over_the_allocation_sends_wait_in_the_class_queue() -> None:
    p = _accepting()
    _hello(p)
    p.take()
    link = p.links.get("n2")
    assert link is not None
    p.links.allocate_bandwidth("n2", 0.001)
    for _ in range(5):
        assert p.links.send(link, 3, [TAG, b"h", b"x" * 100_000])
    assert p.links.queue_lengths()["n2"]["low"] >= 1
    assert p.links.next_deadline(float("inf")) < float("inf")
    p.links.remove_link("n2", p.clock())
    assert p.links.get("n2") is None


def _hello_from(p: Parts, rid: bytes, uid: str | None = "key2") -> None:
    h = Header(int(MsgType.HELLO), "h1", "n2", "n1", 8, 0, 0, None)
    p.links.on_router(0, rid, uid, [rid, TAG, encode_header(h), Hello("n2").pack()],
                      p.clock())


def _ping_from(p: Parts, rid: bytes, uid: str = "key2") -> None:
    h = Header(int(MsgType.PING), "p1", "n2", "n1", 8, 0, 0, None)
    p.links.on_router(0, rid, uid, [rid, TAG, encode_header(h), Ping(1).pack()], p.clock())


def test_incarnation_ids_name_the_node_and_order_dials() -> None:
    r1, r2 = incarnation_id("n2", 0xAB, 1), incarnation_id("n2", 0xAB, 2)
    assert r1 == b"n2#00000000000000ab.1"
    assert node_of_rid(r1) == b"n2" and node_of_rid(b"n2") == b"n2"
    assert superseded(r1, r2) and not superseded(r2, r1)
    # Another broker run (a restart) is never "older": its HELLO takes over.
    assert not superseded(incarnation_id("n2", 0xAB, 9), incarnation_id("n2", 0xCD, 1))
    assert not superseded(b"n2", r1) and not superseded(r1, b"n2")
    assert not superseded(b"n2#junk", r1)


def test_a_new_dial_replaces_the_accepted_session_and_sends_follow_it() -> None:
    """The dialler lost its connection and dialled again while this side still
    holds the old one: the new incarnation's HELLO takes over, sends go to it,
    and what still arrives on the old connection is not taken as the peer's."""
    p = _accepting()
    r1, r2 = incarnation_id("n2", 7, 1), incarnation_id("n2", 7, 2)
    _hello_from(p, r1)
    assert p.types(p.take())[0] == MsgType.WELCOME
    _hello_from(p, r2)
    out = p.take()
    assert out[0][1][0] == r2 and MsgType.WELCOME in p.types(out)
    link = p.links.get("n2")
    assert link is not None and link.rid == r2 and link.up
    _ping_from(p, r2)
    ((_, pong),) = p.take()
    assert pong[0] == r2 and decode(pong, 1).header.type == MsgType.PONG
    _ping_from(p, r1)  # late traffic of the replaced connection
    ((_, bye),) = p.take()
    assert bye[0] == r1 and Bye.unpack(decode(bye, 1).body).code == "no_session"
    assert link.rid == r2


def test_a_late_hello_of_a_replaced_dial_is_ignored() -> None:
    p = _accepting()
    r1, r2 = incarnation_id("n2", 7, 1), incarnation_id("n2", 7, 2)
    _hello_from(p, r2)
    p.take()
    _hello_from(p, r1)
    assert p.take() == []
    assert p.ctx.counters["superseded_hellos"] == 1
    link = p.links.get("n2")
    assert link is not None and link.rid == r2


def test_a_new_incarnation_with_another_key_is_refused_and_changes_nothing() -> None:
    p = _accepting()
    r1 = incarnation_id("n2", 7, 1)
    _hello_from(p, r1)
    p.take()
    squat = incarnation_id("n2", 7, 5)
    _hello_from(p, squat, uid="other")
    ((_, bye),) = p.take()
    assert bye[0] == squat and Bye.unpack(decode(bye, 1).body).code == "refused"
    link = p.links.get("n2")
    assert link is not None and link.rid == r1 and link.key == "key2"


def test_the_advertised_loss_holds_until_the_measured_one_moves_loss_change() -> None:
    """A quiet link's loss wobbling by a percent does not change what the LSA
    says (its refreshes would change the graph every time); a real move does."""
    from operone_zmq.core.links import LOSS_CHANGE

    p = _accepting()
    _hello(p)
    qos = p.links.qos
    said = []
    for loss in (0.0, 0.01, 0.019, 0.005, 0.03, 0.025, 0.04, 0.0):
        qos.record_packet_loss("n2", loss)
        said.append(p.links.link_loss("n2"))
    assert said == [0.0, 0.0, 0.0, 0.0, 0.03, 0.03, 0.03, 0.0]
    assert LOSS_CHANGE == 0.02
