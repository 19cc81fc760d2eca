"""The fast decoders (msgspec header, the common JOB body, the signature
frame) accept and refuse exactly what the checked msgpack path does, with
the same errors; the msgspec-encoded signed bytes are msgpack's."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import msgpack
import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import codec, signature
from operone_zmq.protocol.bodies import JobRequest
from operone_zmq.protocol.signature import SigFrame, message_mac3_parts, message_signed_bytes

_OK = [10, "job-1", "cli", "", 16, 1_700_000_000_000, 2, None]

HEADERS: list[Any] = [
    _OK,
    [11, "x" * 64, "s" * 64, "d" * 64, 0, -5, 0, "c" * 64],
    [99, "job-1", "", "", 16, 0, 2, None],  # unknown type
    [True, "job-1", "", "", 16, 0, 2, None],  # bool is not an int
    [10, "", "", "", 16, 0, 2, None],
    [10, "x" * 65, "", "", 16, 0, 2, None],
    [10, "j", "s" * 65, "", 16, 0, 2, None],
    [10, "j", "", b"bin", 16, 0, 2, None],
    [10, "j", "", "", 256, 0, 2, None],
    [10, "j", "", "", -1, 0, 2, None],
    [10, "j", "", "", 16, 1.5, 2, None],
    [10, "j", "", "", 16, 0, 4, None],
    [10, "j", "", "", 16, 0, 2, 7],
    [10, "j", "", "", 16, 0, 2, "c" * 65],
    [10, "j", "", "", 16, 0, 2],
    [10, "j", "", "", 16, 0, 2, None, None],
    {"type": 10},
    "just a string",
]


def _outcome(fn: Any, raw: bytes) -> Any:
    try:
        return ("ok", fn(raw))
    except ProtocolError as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("h", HEADERS, ids=range(len(HEADERS)))
def test_header_fast_path_matches_the_checked_path(h: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    raw = msgpack.packb(h)
    fast = _outcome(codec.decode_header, raw)
    monkeypatch.setattr(codec, "_fast_header", None)
    assert _outcome(codec.decode_header, raw) == fast


def test_header_fast_path_refuses_trailing_bytes_and_bad_utf8() -> None:
    with pytest.raises(ProtocolError, match="extra bytes"):
        codec.decode_header(msgpack.packb(_OK) + b"\x00")
    bad = msgpack.packb([10, "ab", "", "", 16, 0, 2, None]).replace(b"\xa2ab", b"\xa2\xff\xfe")
    with pytest.raises(ProtocolError, match="UTF-8"):
        codec.decode_header(bad)


BODIES: list[Any] = [
    {"tool": "echo", "args": {}},
    {"tool": "echo", "args": {"a": [1, {"b": 2}], "c": None}},
    {"tool": "", "args": {}},
    {"tool": "x" * 65, "args": {}},
    {"tool": b"echo", "args": {}},
    {"tool": "echo", "args": []},
    {"tool": "echo", "args": None},
    {"tool": "echo", "args": {1: 2}},
    {"tool": "echo", "timeout": 5},
    {"args": {}, "retries": 1},
    {"tool": "echo", "args": {}, "on": "b"},
    {"tool": "echo", "args": {"x": 1}, "on": "b", "timeout": 5.0},
    {"tool": "echo", "args": {}, "on": ""},
    {"tool": "echo", "args": {}, "on": "x" * 65},
    {"tool": "echo", "args": {}, "on": 7},
    {"tool": "echo", "args": {}, "on": None, "timeout": 2.0},
    {"tool": "echo", "args": {}, "on": "b", "timeout": 0.0},
    {"tool": "echo", "args": {}, "timeout": -1.0},
    {"tool": "echo", "args": {}, "timeout": 1e9},
]


@pytest.mark.parametrize("m", BODIES, ids=range(len(BODIES)))
def test_common_job_body_fast_path_matches_the_full_checks(m: Any) -> None:
    raw = msgpack.packb(m)
    got = _outcome(JobRequest.unpack, raw)
    # The same map with a third, default-valued key takes the full checks.
    slow = _outcome(JobRequest.unpack, msgpack.packb({**m, "stream": False}))
    assert got == slow


# ------------------------------------------------ big JOB envelopes (issue 12)
_BIG = b"x" * 70_000  # past ENVELOPE_THRESHOLD: a broker reads it as an envelope

ENVELOPES: list[Any] = [
    {"tool": "echo", "args": {"data": _BIG}},
    {"tool": "echo", "args": {"data": _BIG}, "timeout": 30.0},
    {"tool": "echo", "args": {"data": _BIG, "n": [1, {"deep": [None]}]}, "timeout": 1e-3},
    {"tool": "echo", "args": {"data": _BIG}, "timeout": 30},  # an int timeout
    {"tool": "echo", "args": {"data": _BIG}, "timeout": 0.0},
    {"tool": "echo", "args": {"data": _BIG}, "timeout": 1e9},
    {"tool": "", "args": {"data": _BIG}},
    {"tool": "x" * 65, "args": {"data": _BIG}},
    {"tool": b"echo", "args": {"data": _BIG}},
    {"tool": "echo", "args": [_BIG]},
    {"tool": "echo", "args": {1: _BIG}},
    {"tool": "echo", "args": {f"a{i}": i for i in range(4097)}, "pad": _BIG},
    {"tool": "echo", "args": {"data": _BIG}, "retries": 2},
    {"args": {"data": _BIG}, "timeout": 5.0},
]


def _envelope(raw: bytes) -> Any:
    return _outcome(lambda r: JobRequest.unpack(r, envelope=True), raw)


@pytest.mark.parametrize("m", ENVELOPES, ids=range(len(ENVELOPES)))
def test_big_envelope_fast_path_matches_the_unpacker(m: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from operone_zmq.protocol import bodies

    raw = msgpack.packb(m)
    assert len(raw) > bodies._ENVELOPE_THRESHOLD
    fast = _envelope(raw)
    view = _envelope(memoryview(raw))  # as the pump hands big frames over
    monkeypatch.setattr(bodies, "_raw_map", None)
    slow = _envelope(raw)
    assert fast == slow == view
    if fast[0] == "ok":
        assert fast[1].args_skipped and fast[1].args == {}


@pytest.mark.parametrize("tail", [b"\x00", b""], ids=["trailing byte", "truncated"])
def test_big_envelope_fast_path_refuses_what_the_unpacker_refuses(
        tail: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from operone_zmq.protocol import bodies

    raw = msgpack.packb({"tool": "echo", "args": {"data": _BIG}})
    raw = raw + tail if tail else raw[:-1]
    fast = _envelope(raw)
    monkeypatch.setattr(bodies, "_raw_map", None)
    assert fast[0] == "ProtocolError" and _envelope(raw) == fast


def test_big_envelope_with_a_key_twice_takes_the_unpacker() -> None:
    """The Unpacker checks every "args" it meets; msgspec would keep the last."""
    from operone_zmq.protocol import bodies

    dup = (b"\x83" + msgpack.packb("tool") + msgpack.packb("echo") + msgpack.packb("args")
           + msgpack.packb(1) + msgpack.packb("args") + msgpack.packb({"d": _BIG}))
    assert bodies._fast_envelope(dup) is None
    assert _envelope(dup)[0] == "ProtocolError"


# ------------------------------------------------ body encoding (issue 12)
VALUES: list[Any] = [
    {},
    {"data": _BIG},
    {"x": [1, 2.5, None, True, False, "s", b"b", (1, 2), -(1 << 63), (1 << 64) - 1]},
    {"f": float("nan"), "g": float("-inf"), "h": -0.0},
    {"u": "h\u00e9llo \u20ac \U0001f600", "e": ""},
    {"k": {"n": {"m": [[], {}]}}},
    {"big": 1 << 70},  # the big integer extension: msgpack's way
    {"s": {1, 2}},  # not msgpack-able: the same refusal
    {"d": {1: 2}},  # an int key
    {"x": "\ud800"},  # a lone surrogate
    {"l": list(range(100))},  # past _PLAIN_ELEMENTS
    {"t": msgpack.ExtType(5, b"e")},
    {"o": object()},
]


@pytest.mark.parametrize("v", VALUES, ids=range(len(VALUES)))
def test_fast_body_encoding_writes_what_msgpack_writes(v: Any) -> None:
    from operone_zmq.protocol.bodies import ResultBody, pack_body, pack_value

    def outcome(fn: Any) -> Any:
        try:
            return ("ok", fn())
        except ProtocolError as exc:
            return ("ProtocolError", str(exc))

    m = {"value": v, "node": "n1", "duration": 0.25, "attempts": 1}
    assert outcome(lambda: pack_body(m)) == outcome(lambda: pack_value(m))
    assert outcome(lambda: ResultBody(v, "n1", 0.25).pack()) == outcome(lambda: pack_value(m))
    req = {"tool": "echo", "args": {"v": v}, "timeout": 2.0}
    assert (outcome(lambda: JobRequest("echo", {"v": v}, 2.0).pack())
            == outcome(lambda: pack_value(req)))


@pytest.mark.parametrize("h", [*HEADERS[:16], (10, "j", "", "", 16, 1 << 70, 2, None),
                               (10, "j\u00e9\U0001f600", "s", "d", 255, -(1 << 63), 3, "c"),
                               (10, "j", "", "", 16, 1.5, 2, b"bin")],
                         ids=range(19))
def test_header_encoding_writes_what_msgpack_writes(h: Any) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return ("ok", fn())
        except Exception as exc:
            return (type(exc).__name__,)

    for shape in (tuple(h), codec.Header(*h) if len(h) == 8 else tuple(h)):
        assert outcome(lambda s=shape: codec.encode_header(s)) == outcome(
            lambda s=shape: msgpack.packb(list(s)))


# ------------------------------------------------ signature frames (issue 12)
_MAC, _SIG = b"m" * 32, b"s" * 64

SIG_FRAMES: list[Any] = [
    [1, _SIG, None, None],
    [1, _SIG, ["fp", "operator"], "relay-signer"],
    [1, None, ["fp", "submit"], None],  # unsigned direct JOB
    [1, None, None, "someone"],  # unsigned but names a signer
    [2, _MAC, ["f" * 64, "r" * 64], None],
    [2, None, None, None],  # a MAC frame without its MAC
    [2, _SIG, None, None],  # a MAC of 64 bytes
    [1, _MAC, None, None],  # a signature of 32 bytes
    [1, "s" * 64, None, None],  # a str is not bytes
    [3, _SIG, None, None],
    [True, _SIG, None, None],
    [1.0, _SIG, None, None],
    [1, _SIG, ["fp"], None],
    [1, _SIG, ["fp", "operator", "x"], None],
    [1, _SIG, ["f" * 65, "operator"], None],
    [1, _SIG, ["fp", 7], None],
    [1, _SIG, "fp", None],
    [1, _SIG, None, ""],
    [1, _SIG, None, "s" * 65],
    [1, _SIG, None, b"signer"],
    [1, _SIG, None],
    [1, _SIG, None, None, None],
    {"v": 1},
    "just a string",
]


@pytest.mark.parametrize("v", SIG_FRAMES, ids=range(len(SIG_FRAMES)))
def test_signature_frame_fast_path_matches_the_checked_path(
        v: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = msgpack.packb(v, use_bin_type=True)
    fast = _outcome(SigFrame.unpack, raw)

    def refuse(_raw: Any) -> Any:
        raise ValueError("checked path only")

    monkeypatch.setattr(signature, "_fast_sig_frame", refuse)
    assert _outcome(SigFrame.unpack, raw) == fast
    assert _outcome(SigFrame.unpack, raw + b"\x00")[0] == "ProtocolError"


def test_signed_bytes_are_what_msgpack_packs() -> None:
    """message_signed_bytes, message_mac3_parts and SigFrame.pack (encoded
    by msgspec) are byte for byte msgpack.packb's: every broker of a mesh,
    of any version, must sign and verify the same bytes."""
    rnd = random.Random(12)

    def text() -> str:
        n = rnd.choice([0, 1, 31, 32, 64, 255, 256, 70_000])
        return "".join(rnd.choice("aé€\U0001f600-") for _ in range(n))

    ints = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1,
            -1, -32, -33, -128, -129, -32_768, -32_769, -2**31, -2**31 - 1, -2**63]
    for _ in range(300):
        t, ts, cls = rnd.choice(ints), rnd.choice(ints), rnd.choice(ints)
        mid, src, dst = text(), text(), text()
        corr = rnd.choice([None, text()])
        client = rnd.choice([None, (text(), text())])
        body = rnd.randbytes(rnd.choice([0, 1, 255, 256, 1024, 1025, 65_536]))
        want = b"OZ-MSG-1\x00" + msgpack.packb(
            [t, mid, src, dst, ts, cls, corr, None if client is None else list(client),
             hashlib.sha256(body).digest()], use_bin_type=True)
        assert message_signed_bytes(t, mid, src, dst, ts, cls, corr, client, body) == want
        head, tail = message_mac3_parts(t, mid, src, dst, ts, cls, corr, client, body)
        assert head == b"OZ-MSG-3\x00" + msgpack.packb(
            [t, mid, src, dst, ts, cls, corr, None if client is None else list(client),
             len(body)], use_bin_type=True)
        assert tail == (body if len(body) <= 1024 else hashlib.sha256(body).digest())
        sf = SigFrame(rnd.choice([None, rnd.randbytes(32), rnd.randbytes(64)]), client,
                      rnd.choice([None, text()]), rnd.choice([1, 2, 3]))
        packed = sf.pack()
        assert packed == msgpack.packb(
            [sf.version, sf.sig, None if client is None else list(client), sf.signer],
            use_bin_type=True)


@pytest.mark.parametrize("h", HEADERS[:2], ids=range(2))
def test_a_relayed_header_is_the_header_with_its_ttl_lowered(h: Any) -> None:
    hdr = codec.Header(*h)
    assert codec.encode_relayed_header(hdr) == codec.encode_header(hdr._replace(ttl=hdr.ttl - 1))
