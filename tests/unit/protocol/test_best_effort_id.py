"""Which id an ERROR about an undecodable message carries (docs/protocol.md section 6)."""

from __future__ import annotations

import msgpack
import pytest

from operone_zmq.errors import MessageTooLarge, ProtocolError, UnsupportedVersion
from operone_zmq.protocol import TAG, Header, decode, encode_header
from operone_zmq.protocol.codec import NO_ID, best_effort_id
from operone_zmq.protocol.limits import MAX_HEADER_SIZE, MAX_SIGNATURE_SIZE

RID = b"\x00\x80\x00\x41\xa7"
GOOD = encode_header(Header(10, "job-1", "c", "", 32, 1700000000000, 2, None))


def _h(*fields: object) -> bytes:
    return msgpack.packb(list(fields))


CASES = [
    # (what, frames after the routing id, id expected, the decode error)
    ("oversize signature (too_large, frame 1 small)",
     [TAG, GOOD, b"", b"s" * (MAX_SIGNATURE_SIZE + 1)], "job-1", MessageTooLarge),
    ("oversize header holding a valid id",
     [TAG, _h(10, "job-1", "x" * 2000, "", 32, 0, 2, None), b""], "job-1", MessageTooLarge),
    ("another protocol version", [b"OZ\x02", GOOD, b""], "job-1", UnsupportedVersion),
    ("wrong tag", [b"XX\x01", GOOD, b""], "job-1", ProtocolError),
    ("five frames", [TAG, GOOD, b"", b"", b""], "job-1", ProtocolError),
    ("two frames", [TAG, GOOD], "job-1", ProtocolError),
    ("unknown type code", [TAG, _h(99, "job-1", "", "", 32, 0, 2, None), b""], "job-1",
     ProtocolError),
    ("bad ttl", [TAG, _h(10, "job-1", "", "", 300, 0, 2, None), b""], "job-1", ProtocolError),
    ("7 fields", [TAG, _h(10, "job-1", "", "", 32, 0, 2), b""], "job-1", ProtocolError),
    ("64-character id", [TAG, _h(10, "i" * 64, "x" * 65, "", 32, 0, 2, None), b""], "i" * 64,
     ProtocolError),
    ("64 four-byte characters", [TAG, _h(10, "\U0001f600" * 64, "", "", 300, 0, 2, None), b""],
     "\U0001f600" * 64, ProtocolError),
    # Not recovered:
    ("65-character id", [TAG, _h(10, "i" * 65, "", "", 32, 0, 2, None), b""], NO_ID,
     ProtocolError),
    ("empty id", [TAG, _h(10, "", "", "", 32, 0, 2, None), b""], NO_ID, ProtocolError),
    ("id is bin", [TAG, _h(10, b"job-1", "", "", 32, 0, 2, None), b""], NO_ID, ProtocolError),
    ("type is a str", [TAG, _h("JOB", "job-1", "", "", 32, 0, 2, None), b""], NO_ID,
     ProtocolError),
    ("type is a bool", [TAG, _h(True, "job-1", "", "", 32, 0, 2, None), b""], NO_ID,
     ProtocolError),
    ("header is a map", [TAG, msgpack.packb({"id": "job-1"}), b""], NO_ID, ProtocolError),
    ("array of 1", [TAG, _h(10), b""], NO_ID, ProtocolError),
    ("invalid UTF-8 id", [TAG, b"\x98\x0a\xa2\xff\xfe", b""], NO_ID, ProtocolError),
    ("truncated id", [TAG, b"\x98\x0a\xa5job", b""], NO_ID, ProtocolError),
    ("one frame", [TAG], NO_ID, ProtocolError),
    ("no frames", [], NO_ID, ProtocolError),
]


@pytest.mark.parametrize(("frames", "want", "exc"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_best_effort_id(frames: list[bytes], want: str, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        decode([RID, *frames], 1)
    assert best_effort_id([RID, *frames], 1) == want
    assert best_effort_id(frames) == want


def test_huge_header_costs_only_the_window() -> None:
    big = _h(10, "job-1", "x" * (64 * 1024 * 1024), "", 32, 0, 2, None)
    assert len(big) > MAX_HEADER_SIZE
    assert best_effort_id([TAG, big, b""]) == "job-1"
