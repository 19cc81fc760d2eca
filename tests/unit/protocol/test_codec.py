"""Wire protocol v1: the frame/header codec (operone_zmq.protocol.codec).

Round trips for every message type, a table of malformed inputs (each one
asserting the exception class and a fragment of its message), and a seeded
property-style test: random frames never make decode() raise anything but a
ProtocolError subclass.
"""

from __future__ import annotations

import random
import re
from typing import Any

import msgpack
import pytest

from operone_zmq.errors import MessageTooLarge, ProtocolError, UnsupportedVersion
from operone_zmq.protocol import (
    DEFAULT_TTL,
    MAX_ID_LEN,
    TAG,
    VERSION,
    Header,
    Message,
    MsgType,
    decode,
    decode_header,
    encode,
    encode_header,
)
from operone_zmq.protocol.limits import MAX_HEADER_SIZE, MAX_SIGNATURE_SIZE

TS = 1_700_000_000_000  # ms since the epoch (2023-11-14)


def _hdr(t: int = MsgType.JOB, **kw: Any) -> Header:
    fields: dict[str, Any] = dict(
        type=int(t), id="c-0001", src="c", dst="", ttl=DEFAULT_TTL, ts=TS, cls=2, corr=None
    )
    fields.update(kw)
    return Header(**fields)


def _raw_header(fields: Any) -> bytes:
    """A header frame built by hand (msgpack, no validation)."""
    out: bytes = msgpack.packb(fields)
    return out


GOOD = [10, "c-0001", "c", "", 32, TS, 2, None]


def _with(i: int, value: Any) -> bytes:
    f = list(GOOD)
    f[i] = value
    return _raw_header(f)


# --------------------------------------------------------------- constants
def test_tag_is_oz_and_version_byte() -> None:
    assert TAG == b"OZ\x01" == bytes([0x4F, 0x5A, 0x01])
    assert VERSION == 1


def test_message_type_codes_are_fixed() -> None:
    # The numeric codes are part of the wire protocol: they must never move.
    assert {t.name: int(t) for t in MsgType} == {
        "HELLO": 1, "WELCOME": 2, "PING": 3, "PONG": 4, "LSA": 5, "BYE": 6, "BATCH": 7,
        "JOB": 10, "RESULT": 11, "ERROR": 12, "CANCEL": 13, "PROGRESS": 14,
        "BROADCAST": 20,
        "READY": 30, "HEARTBEAT": 31, "DISCONNECT": 32,
        "QUERY": 40, "REPLY": 41,
    }


def test_error_classes_and_codes() -> None:
    assert issubclass(UnsupportedVersion, ProtocolError)
    assert issubclass(MessageTooLarge, ProtocolError)
    assert (ProtocolError.code, UnsupportedVersion.code, MessageTooLarge.code) == (
        "protocol", "version", "too_large")


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("t", list(MsgType), ids=lambda t: t.name)
def test_round_trip_every_message_type(t: MsgType) -> None:
    h = _hdr(t, id=f"{t.name.lower()}-1", corr="req-1" if t in (MsgType.REPLY,
                                                              MsgType.PONG) else None)
    body = b"\x81\xa1k\x01"
    frames = encode(h, body)
    assert frames == [TAG, encode_header(h), body]
    msg = decode(frames)
    assert msg == Message(h, body, None)
    assert msg.header.type == int(t)
    assert type(msg.header.type) is int
    # With the routing id a ROUTER puts in front.
    assert decode([b"\x00k\x8bE\x67", *frames], 1) == msg
    # With a signature frame.
    signed = encode(h, body, b"s" * 64)
    assert len(signed) == 4
    assert decode(signed) == Message(h, body, b"s" * 64)


HEADER_CASES = {
    "minimal": _hdr(id="x", src="", dst=""),
    "max ids": _hdr(id="i" * 64, src="s" * 64, dst="d" * 64, corr="r" * 64),
    "unicode ids": _hdr(id="job-\u00e9\u4e2d", src="n\u00f8de", dst="\u00fc"),
    "ttl 0": _hdr(ttl=0),
    "ttl 255": _hdr(ttl=255),
    "ts 0": _hdr(ts=0),
    "ts negative": _hdr(ts=-1),
    "ts uint64 max": _hdr(ts=2**64 - 1),
    "ts int64 min": _hdr(ts=-(2**63)),
    "cls 0": _hdr(cls=0),
    "cls 3": _hdr(cls=3),
    "corr empty string": _hdr(corr=""),
    "corr set": _hdr(corr="q-17"),
}


@pytest.mark.parametrize("h", list(HEADER_CASES.values()), ids=list(HEADER_CASES))
def test_header_round_trip(h: Header) -> None:
    raw = encode_header(h)
    assert raw[0] == 0x98  # msgpack fixarray of 8
    assert decode_header(raw) == h
    assert decode(encode(h, b"")) == Message(h, b"", None)


def test_encode_header_accepts_a_plain_tuple() -> None:
    t = (10, "c-0001", "c", "", 32, TS, 2, None)
    assert encode_header(t) == encode_header(Header(*t))


def test_body_and_signature_are_not_interpreted() -> None:
    h = _hdr()
    for body in (b"", b"\xc1\xff not msgpack", bytes(range(256)) * 100):
        assert decode(encode(h, body)).body == body
    assert decode(encode(h, b"", b"")).sig == b""
    assert decode(encode(h, b"", b"k" * MAX_SIGNATURE_SIZE)).sig == b"k" * MAX_SIGNATURE_SIZE


def test_header_exactly_at_the_size_limit_is_parsed() -> None:
    # 1024 bytes are allowed (and then fail as msgpack: extra data), 1025 are not.
    with pytest.raises(ProtocolError, match="not valid msgpack") as ei:
        decode_header(b"\x00" * MAX_HEADER_SIZE)
    assert type(ei.value) is ProtocolError
    with pytest.raises(MessageTooLarge, match="header is 1025 bytes; the limit is 1024"):
        decode_header(b"\x00" * (MAX_HEADER_SIZE + 1))


def test_worked_example_bytes() -> None:
    # The byte-level example of docs/protocol.md.
    h = Header(MsgType.JOB, "c-0001", "c", "", 32, 1_700_000_000_000, 2, None)
    frames = encode(h, msgpack.packb({"tool": "echo", "args": {"x": 1}}))
    assert frames[0].hex() == "4f5a01"
    assert frames[1].hex() == "980aa6632d30303031a163a020cf0000018bcfe5680002c0"
    assert frames[2].hex() == "82a4746f6f6ca46563686fa46172677381a17801"


# -------------------------------------------------------------- malformed
BAD_FRAMES: list[tuple[str, list[bytes], int, type[ProtocolError], str]] = [
    ("no frames", [], 0, ProtocolError, "3 or 4 frames, got 0"),
    ("tag only", [TAG], 0, ProtocolError, "3 or 4 frames, got 1"),
    ("no body", [TAG, encode_header(_hdr())], 0, ProtocolError, "3 or 4 frames, got 2"),
    ("five frames", [TAG, encode_header(_hdr()), b"", b"", b""], 0, ProtocolError,
     "3 or 4 frames, got 5"),
    ("routed, no body", [b"rid", TAG, encode_header(_hdr())], 1, ProtocolError,
     "3 or 4 frames, got 2"),
    ("start past the end", [TAG], 5, ProtocolError, "3 or 4 frames, got 0"),
    ("routed, too many", [b"rid", TAG, encode_header(_hdr()), b"", b"", b""], 1, ProtocolError,
     "3 or 4 frames, got 5"),
    ("REQ envelope (empty delimiter)", [b"rid", b"", TAG, encode_header(_hdr()), b""], 1,
     ProtocolError, "not an operone version tag"),
    ("bad magic", [b"XY\x01", encode_header(_hdr()), b""], 0, ProtocolError,
     "not an operone version tag"),
    ("empty tag", [b"", encode_header(_hdr()), b""], 0, ProtocolError,
     "not an operone version tag"),
    ("short tag", [b"OZ", encode_header(_hdr()), b""], 0, ProtocolError,
     "not an operone version tag"),
    ("long tag", [b"OZ\x01\x00", encode_header(_hdr()), b""], 0, ProtocolError,
     "not an operone version tag"),
    ("lower-case magic", [b"oz\x01", encode_header(_hdr()), b""], 0, ProtocolError,
     "not an operone version tag"),
    ("version 2", [b"OZ\x02", encode_header(_hdr()), b""], 0, UnsupportedVersion,
     "protocol version 2 is not supported"),
    ("version 0", [b"OZ\x00", encode_header(_hdr()), b""], 0, UnsupportedVersion,
     "protocol version 0 is not supported"),
    ("version 255", [b"OZ\xff", b"\xc1", b""], 0, UnsupportedVersion,
     "protocol version 255 is not supported (this node speaks version 1)"),
    ("oversize header", [TAG, encode_header(_hdr(id="x" * 2000)), b""], 0, MessageTooLarge,
     "the limit is 1024"),
    ("oversize signature", [TAG, encode_header(_hdr()), b"", b"s" * (MAX_SIGNATURE_SIZE + 1)],
     0, MessageTooLarge, "signature is 257 bytes; the limit is 256"),
    ("tag checked before header", [b"nope", b"\xc1", b""], 0, ProtocolError,
     "not an operone version tag"),
]


@pytest.mark.parametrize(
    ("frames", "start", "exc", "fragment"),
    [c[1:] for c in BAD_FRAMES],
    ids=[c[0] for c in BAD_FRAMES],
)
def test_decode_rejects_bad_frames(
    frames: list[bytes], start: int, exc: type[ProtocolError], fragment: str
) -> None:
    with pytest.raises(ProtocolError) as ei:
        decode(frames, start)
    assert type(ei.value) is exc
    assert fragment in str(ei.value)


BAD_HEADERS: list[tuple[str, bytes, type[ProtocolError], str]] = [
    # not msgpack at all
    ("empty", b"", ProtocolError, "header is not valid msgpack"),
    ("reserved byte 0xc1", b"\xc1", ProtocolError, "header is not valid msgpack"),
    ("truncated array", b"\x98\x0a\xa6c-00", ProtocolError, "header is not valid msgpack"),
    ("trailing bytes", _raw_header(GOOD) + b"\x00", ProtocolError,
     "header is not valid msgpack"),
    ("invalid utf-8 in str", b"\x98\x0a\xa2\xff\xfe\xa1c\xa0\x20\x00\x02\xc0", ProtocolError,
     "header is not valid msgpack"),
    # not an array of 8
    ("a map", _raw_header({"type": 10}), ProtocolError, "msgpack array of 8 fields"),
    ("an int", _raw_header(10), ProtocolError, "msgpack array of 8 fields"),
    ("a string", _raw_header("JOB"), ProtocolError, "msgpack array of 8 fields"),
    ("nil", _raw_header(None), ProtocolError, "msgpack array of 8 fields"),
    ("empty array", _raw_header([]), ProtocolError, "msgpack array of 8 fields"),
    ("7 fields", _raw_header(GOOD[:7]), ProtocolError, "msgpack array of 8 fields"),
    ("9 fields", _raw_header([*GOOD, None]), ProtocolError, "msgpack array of 8 fields"),
    # type
    ("type unknown 99", _with(0, 99), ProtocolError, "unknown message type 99"),
    ("type 0", _with(0, 0), ProtocolError, "unknown message type 0"),
    ("type negative", _with(0, -10), ProtocolError, "unknown message type -10"),
    ("type as str", _with(0, "10"), ProtocolError,
     "header type must be an integer message type code"),
    ("type as float", _with(0, 10.0), ProtocolError,
     "header type must be an integer message type code"),
    ("type as bool", _with(0, True), ProtocolError,
     "header type must be an integer message type code"),
    ("type nil", _with(0, None), ProtocolError,
     "header type must be an integer message type code"),
    # id
    ("id empty", _with(1, ""), ProtocolError, "header id must be a string of 1..64"),
    ("id 65 chars", _with(1, "i" * 65), ProtocolError, "header id must be a string of 1..64"),
    ("id int", _with(1, 1), ProtocolError, "header id must be a string of 1..64"),
    ("id nil", _with(1, None), ProtocolError, "header id must be a string of 1..64"),
    ("id bin", _with(1, b"c-0001"), ProtocolError, "header id must be a string of 1..64"),
    # src
    ("src 65 chars", _with(2, "s" * 65), ProtocolError, "header src must be a string"),
    ("src nil", _with(2, None), ProtocolError, "header src must be a string"),
    ("src int", _with(2, 7), ProtocolError, "header src must be a string"),
    ("src bin", _with(2, b"c"), ProtocolError, "header src must be a string"),
    # dst
    ("dst 65 chars", _with(3, "d" * 65), ProtocolError, "header dst must be a string"),
    ("dst nil", _with(3, None), ProtocolError, "header dst must be a string"),
    ("dst list", _with(3, ["n1"]), ProtocolError, "header dst must be a string"),
    # ttl
    ("ttl -1", _with(4, -1), ProtocolError, "header ttl must be an integer 0..255"),
    ("ttl 256", _with(4, 256), ProtocolError, "header ttl must be an integer 0..255"),
    ("ttl float", _with(4, 32.0), ProtocolError, "header ttl must be an integer 0..255"),
    ("ttl str", _with(4, "32"), ProtocolError, "header ttl must be an integer 0..255"),
    ("ttl bool", _with(4, True), ProtocolError, "header ttl must be an integer 0..255"),
    ("ttl nil", _with(4, None), ProtocolError, "header ttl must be an integer 0..255"),
    # ts
    ("ts float", _with(5, 1.5), ProtocolError, "header ts must be an integer"),
    ("ts str", _with(5, "1700000000000"), ProtocolError, "header ts must be an integer"),
    ("ts nil", _with(5, None), ProtocolError, "header ts must be an integer"),
    ("ts bool", _with(5, False), ProtocolError, "header ts must be an integer"),
    # cls
    ("cls -1", _with(6, -1), ProtocolError, "header cls must be a priority class 0..3"),
    ("cls 4", _with(6, 4), ProtocolError, "header cls must be a priority class 0..3"),
    ("cls str", _with(6, "normal"), ProtocolError, "header cls must be a priority class"),
    ("cls bool", _with(6, True), ProtocolError, "header cls must be a priority class"),
    ("cls float", _with(6, 2.0), ProtocolError, "header cls must be a priority class"),
    # corr
    ("corr 65 chars", _with(7, "r" * 65), ProtocolError, "header corr must be nil or a string"),
    ("corr int", _with(7, 1), ProtocolError, "header corr must be nil or a string"),
    ("corr bin", _with(7, b"q"), ProtocolError, "header corr must be nil or a string"),
    ("corr false", _with(7, False), ProtocolError, "header corr must be nil or a string"),
    # size
    ("1025 bytes", b"\x90" * (MAX_HEADER_SIZE + 1), MessageTooLarge, "header is 1025 bytes"),
    ("valid but too long", encode_header(_hdr(id="\U0001f600" * 64, src="\U0001f600" * 64,
                                              dst="\U0001f600" * 64, corr="\U0001f600" * 64)),
     MessageTooLarge, "the limit is 1024"),
]


@pytest.mark.parametrize(
    ("raw", "exc", "fragment"), [c[1:] for c in BAD_HEADERS], ids=[c[0] for c in BAD_HEADERS]
)
def test_decode_header_rejects(raw: bytes, exc: type[ProtocolError], fragment: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        decode_header(raw)
    assert type(ei.value) is exc
    assert fragment in str(ei.value)
    # The same through decode(), with and without a routing id.
    with pytest.raises(exc, match=re.escape(fragment)):
        decode([TAG, raw, b""])
    with pytest.raises(exc, match=re.escape(fragment)):
        decode([b"rid", TAG, raw, b"", b"sig"], 1)


def test_ids_are_counted_in_characters_not_bytes() -> None:
    h = _hdr(id="\u00e9" * MAX_ID_LEN)  # 64 characters, 128 bytes of UTF-8
    assert decode_header(encode_header(h)).id == h.id


# ------------------------------------------------------------ properties
_VALID_HEADERS = [encode_header(_hdr(t)) for t in MsgType]
_INTERESTING_HEADERS = _VALID_HEADERS + [c[1] for c in BAD_HEADERS]
_INTERESTING_TAGS = [TAG, b"OZ\x02", b"OZ", b"", b"XYZ", b"OZ\x01\x01"]


def _random_field(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, 1, -1, 3, 4, 10, 255, 256, 2**31, 2**63 - 1, -(2**63), 1.5,
        float("nan"), "", "x", "y" * 64, "z" * 65, b"bin", [], [1], {}, {"a": 1},
    ])


def _random_frames(rng: random.Random) -> tuple[list[bytes], int]:
    kind = rng.randrange(4)
    n = rng.choice((0, 1, 2, 3, 3, 3, 4, 4, 5, 6))
    frames = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
    if kind >= 1 and n >= 1:
        frames[0] = TAG if rng.random() < 0.5 else rng.choice(_INTERESTING_TAGS)
    if kind >= 2 and n >= 2:
        frames[1] = rng.choice(_VALID_HEADERS if rng.random() < 0.5 else _INTERESTING_HEADERS)
    if kind == 3 and n >= 2:
        frames[1] = msgpack.packb([_random_field(rng) for _ in range(rng.choice((7, 8, 8, 8, 9)))])
    start = 0
    if rng.random() < 0.3:
        frames.insert(0, rng.randbytes(5))
        start = 1
    return frames, start


def test_random_frames_raise_only_protocol_errors() -> None:
    rng = random.Random(0x0201)
    decoded = 0
    for _ in range(2000):
        frames, start = _random_frames(rng)
        try:
            msg = decode(frames, start)
        except ProtocolError:
            continue
        decoded += 1
        h = msg.header
        # Whatever decodes satisfies every header rule.
        assert h.type in {int(t) for t in MsgType}
        assert type(h.id) is str
        assert 1 <= len(h.id) <= 64
        assert type(h.src) is str
        assert len(h.src) <= 64
        assert type(h.dst) is str
        assert len(h.dst) <= 64
        assert type(h.ttl) is int
        assert 0 <= h.ttl <= 255
        assert type(h.ts) is int
        assert type(h.cls) is int
        assert 0 <= h.cls <= 3
        assert h.corr is None or (type(h.corr) is str and len(h.corr) <= 64)
        assert len(frames) - start in (3, 4)
    assert decoded > 50  # the generator does reach the success path


def test_random_header_bytes_raise_only_protocol_errors() -> None:
    rng = random.Random(1)
    good = encode_header(_hdr())
    for _ in range(2000):
        if rng.random() < 0.5:
            raw = rng.randbytes(rng.randrange(0, 64))
        else:  # flip a few bytes of a valid header
            b = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            raw = bytes(b[: rng.randrange(len(b) + 1)] if rng.random() < 0.2 else b)
        try:
            decode_header(raw)
        except ProtocolError:
            pass


def test_worked_query_example_bytes() -> None:
    # The QUERY/REPLY example of docs/protocol.md.
    q = Header(MsgType.QUERY, "q1", "c", "", 32, 1_700_000_000_000, 0, None)
    assert encode_header(q).hex() == "9828a27131a163a020cf0000018bcfe5680000c0"
    r = Header(MsgType.REPLY, "q1", "n1", "c", 32, 1_700_000_000_000, 0, "q1")
    assert encode_header(r).hex() == "9829a27131a26e31a16320cf0000018bcfe5680000a27131"


def test_make_header_is_a_header_like_the_named_tuples_own() -> None:
    from operone_zmq.protocol.codec import make_header

    fields = (int(MsgType.RESULT), "j1", "n1.w1", "n1", 1, 1234, 2, None)
    h = make_header(*fields)
    assert type(h) is Header and h == Header(*fields)
    assert (h.type, h.id, h.src, h.dst, h.ttl, h.ts, h.cls, h.corr) == fields
    assert encode_header(h) == encode_header(Header(*fields)) == encode_header(fields)
