"""Relay: routed forwarding and broadcasts."""

from __future__ import annotations

from coreparts import Parts

from operone_zmq.errors import NoRoute
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import pack_value


def test_no_next_hop_counts_no_route() -> None:
    p = Parts()
    assert not p.relay.send_to_node("n9", 2, [TAG, b"h", b"b"], int(MsgType.RESULT))
    p.relay.route_error("n9", "j1", 2, NoRoute("x"))
    assert p.ctx.counters["no_route"] == 2


def test_a_broadcast_is_delivered_once() -> None:
    p = Parts()
    h = Header(int(MsgType.BROADCAST), "b1", "n2", "", 8, 0, 0, None)
    frames = [TAG, encode_header(h), pack_value({"hi": 1})]
    assert p.relay.on_broadcast("n2", h, frames, p.clock()) == 0  # no other links
    assert p.relay.on_broadcast("n2", h, frames, p.clock()) == 0
    assert p.ctx.counters["broadcasts_received"] == 1
    assert list(p.relay.broadcasts) == [{"id": "b1", "src": "n2", "via": "n2",
                                         "data": {"hi": 1}, "size": 5}]
    assert [e[0] for e in p.core.events] == ["message"]


def test_a_client_broadcast_is_answered_with_its_reach() -> None:
    p = Parts()
    h = Header(int(MsgType.BROADCAST), "b1", "cli", "", 8, 0, 0, None)
    p.relay.on_client_broadcast(0, b"\x00c", h, pack_value("x"), p.clock())
    ((sock, frames),) = p.take()
    assert sock == 0 and decode(frames, 1).header.type == MsgType.REPLY


def test_a_job_out_of_hops_is_answered_no_route() -> None:
    from operone_zmq.core.peers import PeerLink

    p = Parts()
    h = Header(int(MsgType.JOB), "j1", "n2", "n9", 1, 0, 2, None)
    p.relay.on_routed(PeerLink("n2"), h, p.job_frames("j1", "echo", src="n2", dst="n9"),
                      p.clock())
    assert p.ctx.counters["ttl_expired"] == 1
    assert p.ctx.counters["relayed"] == 0
