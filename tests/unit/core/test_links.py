"""PeerLinks: handshakes, session messages and QoS queues."""

from __future__ import annotations

from coreparts import Parts

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
