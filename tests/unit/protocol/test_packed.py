"""Packed BATCHes (v1 revision 9): a BATCH in one frame, the tag and then
the body; a lone message goes packed too.  The same decoder, limits and
errors as the three-frame form (test_batch.py)."""

from __future__ import annotations

import msgpack
import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import MsgType
from operone_zmq.protocol.batch import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_BATCH_SEND,
    MAX_BATCHED_MESSAGE,
    decode_batch,
    encode_batch,
    group,
    is_batch,
    is_packed,
    pack_messages,
)
from operone_zmq.protocol.codec import TAG


def _msg(mid: str, body: bytes = b"\x80", sig: bytes | None = None) -> list[bytes]:
    h = msgpack.packb([int(MsgType.JOB), mid, "c", "", 8, 0, 2, None])
    return [TAG, h, body] if sig is None else [TAG, h, body, sig]


def _inner(frames: list[bytes], start: int = 0) -> list[list[bytes]]:
    return decode_batch(frames, start) if is_batch(frames, start) else [frames[start:]]


def test_a_packed_batch_is_the_tag_then_the_batch_body() -> None:
    msgs = [_msg("a"), _msg("b", b"\x81\xa1k\x01", b"S" * 80), _msg("c", b"")]
    (packed,) = pack_messages(msgs, 2, packed=True)
    assert len(packed) == 1
    (frame,) = packed
    # Byte for byte the three-frame BATCH's body, after the tag.
    assert frame == TAG + encode_batch(msgs, 2)[2]
    assert is_packed(packed) and is_batch(packed)
    assert decode_batch(packed) == msgs
    assert decode_batch([b"rid", frame], 1) == msgs
    assert is_packed([b"rid", frame], 1) and is_batch([b"rid", frame], 1)
    # A view of the frame (as a big frame is received) reads the same.
    assert decode_batch([memoryview(frame)]) == msgs


def test_a_lone_message_goes_packed_and_a_big_one_alone() -> None:
    assert pack_messages([_msg("alone")], packed=True) == [[TAG + msgpack.packb(
        [_msg("alone")[1:]])]]
    big = _msg("big", b"x" * (MAX_BATCHED_MESSAGE + 1))
    out = pack_messages([_msg("a"), big, _msg("b"), _msg("c")], packed=True)
    assert [len(f) for f in out] == [1, 3, 1]
    assert out[1] is big  # its body stays a frame of its own
    assert [m for f in out for m in _inner(f)] == [_msg("a"), big, _msg("b"), _msg("c")]


def test_packed_batches_keep_the_caps_of_count_and_bytes() -> None:
    msgs = [_msg(f"m{i}") for i in range(2 * MAX_BATCH_SEND + 3)]
    out = pack_messages(msgs, packed=True)
    assert [len(decode_batch(f)) for f in out] == [MAX_BATCH_SEND, MAX_BATCH_SEND, 3]
    n = MAX_BATCH_BYTES // MAX_BATCHED_MESSAGE + 2
    many = [_msg(f"k{i}", b"y" * (MAX_BATCHED_MESSAGE - 100)) for i in range(n)]
    out = pack_messages(many, packed=True)
    assert all(len(f) == 1 for f in out)
    assert all(sum(len(x) for m in _inner(f) for x in m[1:]) <= MAX_BATCH_BYTES for f in out)
    assert [m for f in out for m in _inner(f)] == many


def test_what_is_not_a_packed_batch() -> None:
    assert not is_packed([TAG]) and not is_batch([TAG])  # the tag alone
    assert not is_packed([b"OZ\x02\x91"]) and not is_batch([b"OZ\x02\x91"])
    assert not is_packed(_msg("a")) and not is_batch(_msg("a"))
    assert not is_packed([b"rid"], 1) and not is_packed([b"rid", TAG, b"h"], 1)
    with pytest.raises(ProtocolError, match="a BATCH has 3 frames, got 2"):
        decode_batch([TAG, b"x"])


@pytest.mark.parametrize(("body", "why"), [
    (b"\xc1", "BATCH is not valid msgpack"),
    (msgpack.packb([]), "non-empty array"),
    (msgpack.packb([[b"h"]]), "2 or 3 bin"),
    (msgpack.packb([[b"x" * 2000, b""]]), "past its limit"),
    (msgpack.packb([[b"h", b""]] * (MAX_BATCH + 1)), "at most 64 messages"),
    (msgpack.packb([[encode_batch([_msg("x")])[1], b""]]), "may not contain a BATCH"),
])
def test_a_bad_packed_batch_is_refused_whole_as_a_batch_is(body: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_batch([TAG + body])
    with pytest.raises(ProtocolError, match=why):
        decode_batch([TAG, encode_batch([_msg("x")])[1], body])


def test_group_packs_for_destinations_that_take_packed_even_alone() -> None:
    """``packs`` picks the destinations that get everything packed (a lone
    message too); the others keep the rules of revision 7."""
    a, b, w = b"\x00A", b"\x00B", b"w1"
    out = [(2, [a, *_msg("a1")]), (2, [b, *_msg("b1")]), (2, [b, *_msg("b2")]),
           (4, [w, *_msg("w1")]), (7, _msg("d1"))]
    packs = {(2, a), (4, w), (7, b"")}
    res = group(out, lambda i, r: True, lambda i: 2, dealers_from=5,
                packs=lambda i, r: (i, r) in packs)
    shapes = sorted((idx, len(f)) for idx, f in res)
    # a (alone, packed: rid + 1 frame), b (a 3-frame BATCH: rid + 3), the
    # worker (alone, packed), the DEALER (alone, packed: 1 frame).
    assert shapes == [(2, 2), (2, 4), (4, 2), (7, 1)]
    got = {}
    for idx, f in res:
        start = 0 if idx >= 5 else 1
        got.setdefault((idx, b"" if start == 0 else f[0]), []).extend(_inner(f, start))
    assert got == {(2, a): [_msg("a1")], (2, b): [_msg("b1"), _msg("b2")],
                   (4, w): [_msg("w1")], (7, b""): [_msg("d1")]}
    # One message, for a destination that does not take packed: as it was.
    assert group(out[1:2], lambda i, r: True, lambda i: 2, packs=lambda i, r: False) == out[1:2]


def test_the_packed_example_of_the_spec_is_what_the_codec_sends() -> None:
    """docs/protocol.md section 5.21 spells one packed JOB out in hex."""
    from pathlib import Path

    from operone_zmq.protocol.bodies import JobRequest
    from operone_zmq.protocol.codec import Header, encode_header

    doc = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    section = doc[doc.index("### 5.21"):doc.index("## 6. Header fields")]
    start = section.index("A JOB alone, packed")
    quoted = section[start:section.index("(`91`", start)]
    spelled = "".join(quoted.split("`")[1::2]).split()
    h = encode_header(Header(int(MsgType.JOB), "j1", "c", "", 8, 0, 2, None))
    body = JobRequest("echo", {}).pack()
    (frames,) = pack_messages([[TAG, h, body]], packed=True)
    assert bytes.fromhex("".join(spelled)) == frames[0]
    assert (len(h), len(body)) == (12, 17)
