"""Relay: routed forwarding and broadcasts."""

from __future__ import annotations

from coreparts import WALL, Parts

from operone_zmq.errors import NoRoute
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import JobRequest, pack_value
from operone_zmq.protocol.signature import SigFrame, Signer, message_signed_bytes


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


# ------------------------------------------ signatures: direct vs relayed
def _signing_parts() -> tuple[Parts, Signer]:
    """A signing core n1 that knows n2's signing key."""
    n2 = Signer.generate()
    keys = {"n2": n2.public_hex}
    return Parts(signer=Signer.generate(), signing_keys=keys.get), n2


def _job(src: str, dst: str = "n1", ts_ms: int | None = None) -> tuple[Header, list[bytes]]:
    ts = int((WALL + 1000.0) * 1000) if ts_ms is None else ts_ms  # Parts: wall = WALL + clock
    h = Header(int(MsgType.JOB), "j1", src, dst, 8, ts, 2, None)
    return h, [TAG, encode_header(h), JobRequest("echo", {}).pack()]


CLIENT = ("f" * 16, "submit")


def test_an_unsigned_message_straight_from_its_origin_is_taken() -> None:
    p, _ = _signing_parts()
    h, frames = _job("n2")
    client = p.relay.verified(h, [*frames, SigFrame(None, CLIENT).pack()], "n2")
    assert client == CLIENT
    assert p.relay.verified(h._replace(type=int(MsgType.RESULT)), frames, "n2") is None
    assert p.ctx.counters["unsigned_direct"] == 2
    assert p.ctx.counters["signatures_refused"] == 0


def test_an_unsigned_message_from_a_relay_naming_another_src_is_refused() -> None:
    """A relay (the link is n3's) claiming src=n2 without a signature: refused,
    with or without a client frame; so is one for a host we serve (dst is
    not this node), a stale one, and a malformed frame from the origin."""
    p, _ = _signing_parts()
    h, frames = _job("n2")
    assert p.relay.verified(h, frames, "n3") is False
    assert p.relay.verified(h, [*frames, SigFrame(None, CLIENT).pack()], "n3") is False
    assert p.relay.verified(h, frames, None) is False  # a broadcast is always signed
    hl, fl = _job("n2", dst="ssh-host")
    assert p.relay.verified(hl, fl, "n2") is False
    assert p.relay.verified(h, [*frames, b"\xc1"], "n2") is False
    assert p.ctx.counters["signatures_refused"] == 5
    ho, fo = _job("n2", ts_ms=int(WALL * 1000) - 3_600_000)
    assert p.relay.verified(ho, fo, "n2") is False
    assert p.ctx.counters["replays_refused"] == 1
    assert p.ctx.counters["unsigned_direct"] == 0


def test_a_relayed_message_still_needs_its_origins_signature() -> None:
    """Signed by n2, it passes whichever link it came on; signed by another
    key in n2's name, it does not."""
    p, n2 = _signing_parts()
    h, frames = _job("n2")

    def signed(by: Signer) -> list[bytes]:
        data = message_signed_bytes(h.type, h.id, h.src, h.dst, h.ts, h.cls, h.corr, CLIENT,
                                    frames[2])
        return [*frames, SigFrame(by.sign(data), CLIENT).pack()]

    assert p.relay.verified(h, signed(Signer.generate()), "n3") is False
    assert p.relay.verified(h, signed(n2), "n3") == CLIENT
    assert p.ctx.counters["signatures_refused"] == 1


def test_only_our_own_messages_to_the_next_hop_go_unsigned() -> None:
    p, _ = _signing_parts()
    _, mine = _job("n1", dst="n2")
    assert p.relay.sign(mine, direct=True) == mine
    direct = p.relay.sign(mine, CLIENT, direct=True)
    assert SigFrame.unpack(direct[3]) == SigFrame(None, CLIENT)
    signed = SigFrame.unpack(p.relay.sign(mine, CLIENT)[3])
    assert signed.sig is not None and signed.client == CLIENT
    _, hosts = _job("ssh-host", dst="n2")  # an SSH host we answer for: still signed
    assert SigFrame.unpack(p.relay.sign(hosts, direct=True)[3]).signer == "n1"


def test_signing_with_the_header_fields_signs_what_decoding_the_header_would() -> None:
    """The origin and an answering node hand sign() the tuple they encoded the
    header from; the frames are byte for byte those of decoding it again
    (Ed25519 is deterministic); and an SSH host's answer is signed in our name."""
    p, _ = _signing_parts()
    for src in ("n1", "ssh-host"):
        h, mine = _job(src, dst="n2")
        fields = (h.type, h.id, h.src, h.dst, h.ttl, h.ts, h.cls, h.corr)
        for client in (CLIENT, None):
            signed = p.relay.sign(mine, client, fields=fields)
            assert len(signed) == 4 and signed == p.relay.sign(mine, client)
        assert p.relay.sign(mine, CLIENT, direct=True, fields=fields) == p.relay.sign(
            mine, CLIENT, direct=True)


def test_originate_sends_what_send_to_node_would_from_the_encoded_header() -> None:
    """originate() encodes the header from its fields, signs from them, and
    routes by their dst, as send_to_node() does with the encoded frames."""
    p, _ = _signing_parts()
    h, frames = _job("n1", dst="n9")
    assert not p.relay.originate(h, frames[2:], client=CLIENT)
    assert not p.relay.send_to_node("n9", h.cls, frames, h.type, client=CLIENT)
    assert p.ctx.counters["no_route"] == 2
