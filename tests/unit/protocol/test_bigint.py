"""Integers beyond 64 bits: msgpack extension type 1 (docs/protocol.md section 5.2)."""

from __future__ import annotations

import msgpack
import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import ErrorBody, JobRequest, ResultBody, pack_value, unpack_value
from operone_zmq.protocol.bodies import bigint_from_bytes, bigint_to_bytes, unpack_map
from operone_zmq.protocol.limits import EXT_BIGINT, MAX_BIGINT_BYTES

EDGES = [2**64, -(2**63) - 1, -(2**64), 2**64 + 1, 2**127, -(2**127), 10**40, -(10**40),
         2**1000 - 1, -(2**(8 * MAX_BIGINT_BYTES - 1))]


@pytest.mark.parametrize("v", EDGES, ids=[f"bits{v.bit_length()}" for v in EDGES])
def test_round_trip(v: int) -> None:
    raw = pack_value(v)
    assert unpack_value(raw) == v
    ext = msgpack.unpackb(raw)
    assert isinstance(ext, msgpack.ExtType) and ext.code == EXT_BIGINT == 1
    assert int.from_bytes(ext.data, "big", signed=True) == v


@pytest.mark.parametrize("v", [0, 1, -1, 2**64 - 1, -(2**63), 2**63, 127, -128])
def test_64_bit_integers_stay_plain_msgpack(v: int) -> None:
    assert pack_value(v) == msgpack.packb(v)


@pytest.mark.parametrize(("v", "data"), [
    (2**64, "010000000000000000"),            # 9 bytes: 0x01 then 8 zero bytes
    (-(2**63) - 1, "ff7fffffffffffffff"),     # 9 bytes
    (-(2**64), "ff0000000000000000"),
    (2**71, "00800000000000000000"),          # a leading 00 keeps it positive
    (-128, "80"), (127, "7f"), (128, "0080"), (-129, "ff7f"),
])
def test_encoding_is_shortest_signed_big_endian(v: int, data: str) -> None:
    assert bigint_to_bytes(v).hex() == data
    assert bigint_from_bytes(bytes.fromhex(data)) == v


def test_spec_example_bytes() -> None:
    """The example of docs/protocol.md section 5.2."""
    assert pack_value(2**64).hex(" ") == "c7 09 01 01 00 00 00 00 00 00 00 00"
    assert pack_value(-(2**64)).hex(" ") == "c7 09 01 ff 00 00 00 00 00 00 00 00"
    assert pack_value(354224848179261915075).hex(" ") == "c7 09 01 13 33 db 76 a7 c5 94 bf c3"


def test_decoders_accept_non_shortest_and_small_values() -> None:
    assert unpack_value(msgpack.packb(msgpack.ExtType(1, b"\x00\x00\x05"))) == 5
    assert unpack_value(msgpack.packb(msgpack.ExtType(1, b"\xff"))) == -1


def test_in_every_body_that_carries_values() -> None:
    big = {"n": 2**100, "l": [-(2**90)], "m": {"k": 3**80}}
    assert JobRequest.unpack(JobRequest("t", big).pack()).args == big
    assert ResultBody.unpack(ResultBody(2**200, "n1").pack()).value == 2**200
    assert ErrorBody.unpack(ErrorBody("job", "x", details={"v": 2**70}).pack()).details == {
        "v": 2**70}
    assert unpack_map(pack_value({"v": -(2**99)}), "QUERY") == {"v": -(2**99)}


def test_bad_extension_data_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"^body is not valid msgpack: big integer extension "
                                            r"must hold 1\.\.65536 bytes, got 0$"):
        unpack_value(msgpack.packb(msgpack.ExtType(1, b"")))
    with pytest.raises(ProtocolError, match="got 65537"):
        ResultBody.unpack(msgpack.packb({"value": msgpack.ExtType(1, b"\x01" * 65537)}))


def test_too_big_to_encode() -> None:
    with pytest.raises(ProtocolError, match=r"beyond the 524288-bit limit"):
        pack_value(2**(8 * MAX_BIGINT_BYTES))


def test_other_extension_codes_are_left_alone() -> None:
    assert unpack_value(msgpack.packb(msgpack.ExtType(7, b"ab"))) == msgpack.ExtType(7, b"ab")
    assert pack_value(msgpack.ExtType(7, b"ab")) == msgpack.packb(msgpack.ExtType(7, b"ab"))


def test_bool_is_not_an_integer_here() -> None:
    assert unpack_value(pack_value([True, False])) == [True, False]
