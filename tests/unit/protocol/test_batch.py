"""BATCH (v1 revision 7): the codec, its limits, and the grouping rule."""

from __future__ import annotations

import msgpack
import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import MsgType, decode
from operone_zmq.protocol.batch import (
    BATCH_PREFIX,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_BATCH_SEND,
    MAX_BATCHED_MESSAGE,
    batch_header,
    decode_batch,
    encode_batch,
    group,
    is_batch,
    pack_messages,
)
from operone_zmq.protocol.codec import TAG, decode_header


def _msg(mid: str, body: bytes = b"\x80", sig: bytes | None = None) -> list[bytes]:
    h = msgpack.packb([int(MsgType.JOB), mid, "c", "", 8, 0, 2, None])
    return [TAG, h, body] if sig is None else [TAG, h, body, sig]


def _inner(frames: list[bytes]) -> list[list[bytes]]:
    return decode_batch(frames) if is_batch(frames) else [frames]


def test_round_trip_keeps_every_frame_and_signature() -> None:
    msgs = [_msg("a"), _msg("b", b"\x81\xa1k\x01", b"S" * 80), _msg("c", b"")]
    frames = encode_batch(msgs, 1)
    assert len(frames) == 3 and frames[0] == TAG and is_batch(frames)
    h = decode_header(frames[1])
    assert (h.type, h.id, h.ttl, h.cls) == (MsgType.BATCH, "batch", 0, 1)
    assert frames[1][:2] == BATCH_PREFIX == batch_header(3)[:2]
    assert decode_batch(frames) == msgs
    assert decode(frames).header.type == MsgType.BATCH  # a normal message too
    assert decode_batch([b"rid", *frames], 1) == msgs


def test_a_batch_body_is_what_msgpack_writes() -> None:
    """The body is encoded by msgspec: the same bytes as msgpack.packb, views included."""
    msgs = [_msg("a"), _msg("b", b"x" * 300, b"S" * 64), _msg("c", b"y" * 70_000)]
    assert encode_batch(msgs)[2] == msgpack.packb([m[1:] for m in msgs])
    views = [[TAG, memoryview(m[1]), memoryview(m[2])] for m in msgs]
    assert encode_batch(views)[2] == encode_batch([m[:3] for m in msgs])[2]


def test_a_single_message_is_not_a_batch() -> None:
    assert not is_batch(_msg("a"))
    assert not is_batch([TAG])


@pytest.mark.parametrize(("body", "why"), [
    (b"\xc1", "BATCH"),
    (msgpack.packb({"a": 1}), "BATCH"),
    (msgpack.packb([]), "non-empty array"),
    (msgpack.packb(b"x"), "non-empty array"),
    (msgpack.packb([[b"h"]]), "2 or 3 bin"),
    (msgpack.packb([[b"h", b"b", b"s", b"x"]]), "2 or 3 bin"),
    (msgpack.packb([["h", b"b"]]), "2 or 3 bin"),
    (msgpack.packb([[b"h", 1]]), "2 or 3 bin"),
    (msgpack.packb([b"h"]), "2 or 3 bin"),
    (msgpack.packb([[b"x" * 2000, b""]]), "past its limit"),
    (msgpack.packb([[b"h", b"", b"s" * 300]]), "past its limit"),
    (msgpack.packb([[b"h", b""]] * (MAX_BATCH + 1)), "BATCH"),
])
def test_a_bad_batch_is_refused_whole(body: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_batch([TAG, batch_header(2), body])


def test_at_most_max_batch_messages_and_exactly_three_frames() -> None:
    ok = [TAG, batch_header(0), msgpack.packb([[b"h", b""]] * MAX_BATCH)]
    assert len(decode_batch(ok)) == MAX_BATCH
    with pytest.raises(ProtocolError, match="3 frames"):
        decode_batch([*ok, b"signature"])


def test_a_batch_inside_a_batch_is_refused() -> None:
    nested = encode_batch([_msg("a"), _msg("b")])
    with pytest.raises(ProtocolError, match="may not contain a BATCH"):
        decode_batch(encode_batch([_msg("c"), nested]))


def test_a_bad_inner_message_is_handed_on_for_its_own_checks() -> None:
    # The batch is well formed; the inner header is junk: decode() refuses it alone.
    msgs = decode_batch(encode_batch([[TAG, b"\xc1", b""], _msg("ok")]))
    with pytest.raises(ProtocolError):
        decode(msgs[0])
    assert decode(msgs[1]).header.id == "ok"


def test_pack_messages_caps_count_and_bytes_and_keeps_order() -> None:
    msgs = [_msg(f"m{i}") for i in range(2 * MAX_BATCH_SEND + 3)]
    out = pack_messages(msgs, 2)
    assert [len(decode_batch(f)) for f in out] == [MAX_BATCH_SEND, MAX_BATCH_SEND, 3]
    assert [m for f in out for m in _inner(f)] == msgs
    big = _msg("big", b"x" * (MAX_BATCHED_MESSAGE + 1))
    out = pack_messages([_msg("a"), _msg("b"), big, _msg("c")])
    assert [is_batch(f) for f in out] == [True, False, False]
    assert out[1] is big
    assert [m for f in out for m in _inner(f)] == [_msg("a"), _msg("b"), big, _msg("c")]
    n = MAX_BATCH_BYTES // MAX_BATCHED_MESSAGE + 2
    many = [_msg(f"k{i}", b"y" * (MAX_BATCHED_MESSAGE - 100)) for i in range(n)]
    out = pack_messages(many)
    assert all(sum(len(x) for m in _inner(f) for x in m[1:]) <= MAX_BATCH_BYTES for f in out)
    assert [m for f in out for m in _inner(f)] == many
    assert pack_messages([_msg("alone")]) == [_msg("alone")]


def test_group_batches_only_for_destinations_that_accept() -> None:
    a, b, w = b"\x00A", b"\x00B", b"w1"
    out = [(2, [a, *_msg("a1")]), (2, [b, *_msg("b1")]), (4, [w, *_msg("w1")]),
           (2, [a, *_msg("a2")]), (2, [b, *_msg("b2")]), (4, [w, *_msg("w2")]),
           (0, [a, *_msg("a-critical")])]
    accept = {(2, a), (4, w), (0, a)}
    res = group(out, lambda i, r: (i, r) in accept, lambda i: min(i, 3))
    sent: dict[tuple[int, bytes], list[list[bytes]]] = {}
    batches = 0
    for idx, frames in res:
        rid, rest = frames[0], frames[1:]
        if is_batch(rest):
            batches += 1
            assert decode_header(rest[1]).cls == min(idx, 3)
        sent.setdefault((idx, rid), []).extend(_inner(rest))
    assert batches == 2  # A on class 2 and the worker; B does not accept; one on class 0
    assert sent == {(2, a): [_msg("a1"), _msg("a2")], (2, b): [_msg("b1"), _msg("b2")],
                    (4, w): [_msg("w1"), _msg("w2")], (0, a): [_msg("a-critical")]}
    assert group(out[:1], lambda i, r: True, lambda i: 0) == out[:1]


def test_group_batches_dealer_entries_without_a_routing_id() -> None:
    """Entries on sockets from ``dealers_from`` on carry no routing id (a
    broker's dialled DEALERs): one destination per socket, asked as
    ``accepts(socket, b"")``, grouped as ``[tag, header, body]`` BATCHes; a
    big message goes alone and the order per socket is kept."""
    r = b"n2#0123456789abcdef.1"
    big = _msg("big", b"x" * (MAX_BATCHED_MESSAGE + 1))
    out = [(5, _msg("d1")), (1, [r, *_msg("r1")]), (6, _msg("e1")), (5, _msg("d2")),
           (5, big), (1, [r, *_msg("r2")]), (6, _msg("e2")), (5, _msg("d3")),
           (5, _msg("d4"))]
    asked: list[tuple[int, bytes]] = []

    def accepts(i: int, rid: bytes) -> bool:
        asked.append((i, rid))
        return i in (1, 5)

    res = group(out, accepts, lambda i: 2 if i == 5 else 1, dealers_from=5)
    assert sorted(asked) == [(1, r), (5, b""), (6, b"")]
    by_sock: dict[int, list[list[bytes]]] = {}
    for idx, frames in res:
        by_sock.setdefault(idx, []).append(frames)
    assert [is_batch(f) for f in by_sock[5]] == [True, False, True]
    assert decode_header(by_sock[5][0][1]).cls == 2
    assert [m for f in by_sock[5] for m in _inner(f)] == [
        _msg("d1"), _msg("d2"), big, _msg("d3"), _msg("d4")]
    assert by_sock[5][1] is big
    assert by_sock[6] == [_msg("e1"), _msg("e2")]  # does not accept: singles
    (router,) = by_sock[1]  # ROUTER entries as before: routing id first
    assert router[0] == r and decode_batch(router, 1) == [_msg("r1"), _msg("r2")]
    # Without dealers_from, nothing is taken for a DEALER entry.
    assert all(not is_batch(f, 1) for _, f in group(out[:4], lambda i, r: i != 1,
                                                     lambda i: 0))
