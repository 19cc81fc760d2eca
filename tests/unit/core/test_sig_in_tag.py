"""Signatures after the tag (revision 9): a signed message that goes alone to
a neighbour that said ``sig_in_tag`` on that connection is three frames, its
signature's bytes in frame 0 after the tag; the receiver takes it exactly as
the four frames it stands for.  A neighbour that did not say it (a broker of
an earlier revision) keeps getting four frames."""

from __future__ import annotations

import pytest

from operone_zmq.core.broker import FIRST_DIAL_SOCKET, WORKERS
from operone_zmq.core.client import JobResult
from operone_zmq.errors import MessageTooLarge, ProtocolError
from operone_zmq.protocol import TAG, MsgType, decode
from operone_zmq.protocol.batch import decode_batch, is_batch
from operone_zmq.protocol.codec import sig_from_tag, sig_into_tag
from operone_zmq.protocol.signature import SigFrame
from operone_zmq.testing import CoreMesh

Sent = list[tuple[str, int, list[bytes]]]
SIG = SigFrame(b"M" * 32, ("0123456789abcdef", "submit"), None, 2).pack()


def _chain(*, b_says: bool = True) -> CoreMesh:
    """a - b - c (a dials b, b dials c), a worker on c; b says sig_in_tag or not."""
    m = CoreMesh(batched=True, signed=True)
    for x in "abc":
        m.add(x)
    m.nodes["b"].sig_in_tag = b_says
    m.dial("a", "b")
    m.dial("b", "c")
    m.run()
    m.advance(2)
    m.add_worker("c", ["echo"], slots=100)
    m.run()
    return m


def _routed(seen: Sent) -> list[tuple[str, int, list[bytes]]]:
    """The JOBs and RESULTs sent to neighbours, alone: (sender, socket,
    operone frames as they went)."""
    out = []
    for node, sock, frames in seen:
        if sock >= FIRST_DIAL_SOCKET:
            ours = frames
        elif sock < WORKERS and frames[0][:1] != b"\x00":
            ours = frames[1:]
        else:
            continue
        if is_batch(ours) or len(ours) < 3:
            continue
        t = decode(sig_from_tag(ours) if len(ours[0]) > 3 else ours).header.type
        if t in (MsgType.JOB, MsgType.RESULT):
            out.append((node, sock, ours))
    return out


def _one_at_a_time(m: CoreMesh, n: int) -> Sent:
    """``n`` echo jobs from a client of a for c, each alone, answered."""
    seen: Sent = []
    m.wire = seen
    client = m.client("a")
    for i in range(n):
        jid, frames = client.job("echo", {"i": i}, on="c")
        m.send_client("a", frames)
        m.run()
        reply = m.replies("a")[jid]
        assert isinstance(reply, JobResult) and reply.value["args"] == {"i": i}
    return seen


def test_a_lone_signed_message_goes_as_three_frames_both_ways_on_both_transports() -> None:
    m = _chain()
    a, b, c = (m.nodes[x] for x in "abc")
    assert a.links["b"].dial_sig_in_tag and b.links["a"].accepted_sig_in_tag
    assert b.links["c"].dial_sig_in_tag and c.links["b"].accepted_sig_in_tag
    routed = _routed(_one_at_a_time(m, 5))
    # a -> b and b -> c on DEALERs, c -> b and b -> a on ROUTERs: every one
    # three frames, the MAC frame after the tag.
    assert {(node, sock >= FIRST_DIAL_SOCKET) for node, sock, _ in routed} == {
        ("a", True), ("b", True), ("c", False), ("b", False)}
    for _, _, frames in routed:
        assert len(frames) == 3 and frames[0][:3] == TAG
        assert SigFrame.unpack(frames[0][3:]).version == 3  # a pairwise MAC (revision 10)
    assert c.counters["pairwise_macs"] == 5 and a.counters["pairwise_macs"] == 5
    for node in (a, b, c):
        assert node.counters["malformed"] == 0
        assert node.counters["signatures_refused"] == 0


def test_a_neighbour_that_did_not_say_it_gets_four_frames() -> None:
    m = _chain(b_says=False)
    a, b, c = (m.nodes[x] for x in "abc")
    assert not a.links["b"].dial_sig_in_tag and not c.links["b"].accepted_sig_in_tag
    assert b.links["a"].accepted_sig_in_tag and b.links["c"].dial_sig_in_tag
    routed = _routed(_one_at_a_time(m, 3))
    to_b = [f for node, _, f in routed if node in "ac"]
    from_b = [f for node, _, f in routed if node == "b"]
    assert to_b and all(len(f) == 4 and f[0] == TAG for f in to_b)
    assert from_b and all(len(f) == 3 and len(f[0]) > 3 for f in from_b)
    assert c.counters["signatures_refused"] == 0 and b.counters["malformed"] == 0


def test_in_a_batch_the_signature_stays_the_third_element() -> None:
    """Many at once: they go in BATCHes ([header, body, sig] each), not after
    a tag; every job is answered."""
    m = _chain()
    seen: Sent = []
    m.wire = seen
    client = m.client("a")
    ids = []
    for i in range(40):
        jid, frames = client.job("echo", {"i": i}, on="c")
        ids.append(jid)
        m.send_client("a", frames)
    m.run()
    replies = m.replies("a")
    assert all(isinstance(replies[j], JobResult) for j in ids)
    inner = [msg for node, sock, frames in seen if sock >= FIRST_DIAL_SOCKET
             and is_batch(frames) for msg in decode_batch(frames)]
    assert inner and all(len(msg) in (3, 4) and msg[0] == TAG for msg in inner)
    assert any(len(msg) == 4 for msg in inner)


def test_the_codec_round_trip_and_what_decode_then_refuses() -> None:
    h = b"\x98\x0a\xa2j1\xa1a\xa1c\x08\x00\x02\xc0"
    four = [TAG, h, b"\x80", SIG]
    three = sig_into_tag(four)
    assert three == [TAG + SIG, h, b"\x80"]
    assert sig_from_tag(three) == four
    assert sig_from_tag([b"rid", *three], 1) == [b"rid", *four]
    assert sig_into_tag([b"rid", *four], 1) == [b"rid", *three]
    assert decode(sig_from_tag(three)).sig == SIG
    with pytest.raises(MessageTooLarge, match="signature is 257 bytes"):
        decode(sig_from_tag([TAG + b"s" * 257, h, b""]))
    with pytest.raises(ProtocolError, match="version tag"):
        decode(sig_from_tag([b"XY\x01" + SIG, h, b""]))
    with pytest.raises(ProtocolError, match="version tag"):
        decode([TAG + SIG, h, b"", SIG])  # a long tag on 4 frames is no tag
