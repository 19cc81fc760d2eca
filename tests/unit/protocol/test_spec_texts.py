"""docs/protocol.md's tables of decoder errors are what the codec really says.

The tables between the ``<!-- codec-errors:... -->``, ``<!-- body-errors:... -->``
and ``<!-- batch-errors:... -->`` markers are generated here from the real codec;
the test fails when the document and the codec disagree.  Print the current
tables with ``python tests/unit/protocol/test_spec_texts.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import JobRequest, Query, ResultBody, decode
from operone_zmq.protocol.batch import MAX_BATCH, batch_header, decode_batch
from operone_zmq.protocol.bodies import (
    WHY_DEPTH,
    WHY_EXTRA,
    WHY_MALFORMED,
    WHY_MAP_KEY,
    WHY_TRUNCATED,
    WHY_UTF8,
)
from operone_zmq.protocol.codec import best_effort_id

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
T = b"OZ\x01"
#: The header of the worked example of section 12.
H = bytes.fromhex("980aa6632d30303031a163a020cf0000018bcfe5680002c0")


def _h(*fields: Any) -> bytes:
    return msgpack.packb(list(fields))


FRAME_CASES: list[list[bytes]] = [
    [T, H],
    [T, H, b"", b"", b""],
    [b"OZ\x02", H, b""],
    [b"", T, H, b""],
    [T, _h(10, "c-0001", "x" * 1010, "", 32, 0, 2, None), b""],
    [T, b"", b""],
    [T, b"\xc1", b""],
    [T, b"\x98\x0a\xa6c-00", b""],
    [T, H + b"\xc0", b""],
    [T, bytes.fromhex("980aa2fffea0a020000200"), b""],
    [T, _h(10, "c-0001", "c", ""), b""],
    [T, msgpack.packb({"type": 10}), b""],
    [T, _h(99, "c-0001", "c", "", 32, 0, 2, None), b""],
    [T, _h(b"\x0a", "c-0001", "c", "", 32, 0, 2, None), b""],
    [T, _h(10, "", "c", "", 32, 0, 2, None), b""],
    [T, _h(10, "c-0001", b"c", "", 32, 0, 2, None), b""],
    [T, _h(10, "c-0001", "c", "d" * 65, 32, 0, 2, None), b""],
    [T, _h(10, "c-0001", "c", "", 256, 0, 2, None), b""],
    [T, _h(10, "c-0001", "c", "", 32, 1.5, 2, None), b""],
    [T, _h(10, "c-0001", "c", "", 32, 0, 4, None), b""],
    [T, _h(10, "c-0001", "c", "", 32, 0, 2, 7), b""],
    [T, H, b"", b"s" * 257],
]

BODY_CASES: list[tuple[str, Callable[[bytes], Any], bytes]] = [
    ("JOB", JobRequest.unpack, b""),
    ("JOB", JobRequest.unpack, b"\xc1"),
    ("JOB", JobRequest.unpack, b"\x80\x80"),
    ("JOB", JobRequest.unpack, b"\x81\xa4tool\xa2\xff\xfe"),
    ("QUERY", Query.unpack, b"\x81\x01\x01"),
    ("RESULT", ResultBody.unpack, b"\x81\xa5value" + b"\x91" * 1100 + b"\xc0"),
    ("RESULT", ResultBody.unpack, b"\x81\xa5value\xc7\x00\x01"),
    ("RESULT", ResultBody.unpack, b"\xdd\xff\xff\xff\xff"),
]

#: Bodies of a BATCH (section 5.20) that are refused whole.
BATCH_CASES: list[bytes] = [
    b"\xc1",
    msgpack.packb([]),
    msgpack.packb({"a": 1}),
    msgpack.packb([[b"h"]]),
    msgpack.packb([["h", b""]]),
    msgpack.packb([[b"h", b"", b"s", b"x"]]),
    msgpack.packb([[b"x" * 1025, b""]]),
    msgpack.packb([[b"h", b"", b"s" * 257]]),
    msgpack.packb([[b"h", b""]] * (MAX_BATCH + 1)),
    msgpack.packb([[batch_header(2), b"\x90"]]),
]


def _hex(b: bytes, limit: int) -> str:
    if not b:
        return "∅"
    return b.hex() if len(b) <= limit else f"{b[:12].hex()}… ({len(b)} bytes)"


def frame_table() -> str:
    rows = ["| frames after the routing id (hex; `∅` = an empty frame) | raises (ERROR `code`) "
            "| message | ERROR `id` |", "|---|---|---|---|"]
    for frames in FRAME_CASES:
        try:
            decode(frames)
        except ProtocolError as exc:
            shown = " + ".join(_hex(f, 40) for f in frames)
            rows.append(f"| `{shown}` | `{type(exc).__name__}` (`{exc.code}`) | `{exc}` "
                        f"| `{best_effort_id(frames)}` |")
        else:  # pragma: no cover - every case is invalid
            raise AssertionError(f"{frames!r} decoded")
    return "\n".join(rows)


def body_table() -> str:
    rows = ["| body of | bytes (hex) | message |", "|---|---|---|"]
    for what, unpack, raw in BODY_CASES:
        try:
            unpack(raw)
        except ProtocolError as exc:
            rows.append(f"| {what} | `{_hex(raw, 24)}` | `{exc}` |")
        else:  # pragma: no cover
            raise AssertionError(f"{raw!r} decoded")
    return "\n".join(rows)


def batch_table() -> str:
    rows = ["| BATCH body (hex) | message (ERROR `protocol`) |", "|---|---|"]
    for raw in BATCH_CASES:
        try:
            decode_batch([T, batch_header(2), raw])
        except ProtocolError as exc:
            rows.append(f"| `{_hex(raw, 24)}` | `{exc}` |")
        else:  # pragma: no cover
            raise AssertionError(f"{raw!r} decoded")
    return "\n".join(rows)


def _between(text: str, marker: str) -> str:
    m = re.search(rf"<!-- {marker}:begin -->\n(.*?)\n<!-- {marker}:end -->", text, re.S)
    assert m is not None, f"docs/protocol.md has no {marker} markers"
    return m.group(1)


def test_frame_error_table_matches_the_codec() -> None:
    assert _between(DOC.read_text(), "codec-errors") == frame_table()


def test_body_error_table_matches_the_codec() -> None:
    assert _between(DOC.read_text(), "body-errors") == body_table()


def test_batch_error_table_matches_the_codec() -> None:
    assert _between(DOC.read_text(), "batch-errors") == batch_table()


def test_every_reason_is_listed_and_shown() -> None:
    text = DOC.read_text()
    tables = frame_table() + body_table()
    for why in (WHY_TRUNCATED, WHY_EXTRA, WHY_UTF8, WHY_MAP_KEY, WHY_DEPTH, WHY_MALFORMED):
        assert f"`{why}`" in text
        assert why in tables


def test_no_python_repr_and_nothing_empty_on_the_wire() -> None:
    for line in (frame_table() + "\n" + body_table() + "\n" + batch_table()).splitlines():
        if line.startswith("|---") or line.startswith("| frames") or line.startswith("| bo") \
                or line.startswith("| BATCH body"):
            continue
        assert "b'" not in line and 'b"' not in line and ": `" not in line


if __name__ == "__main__":
    print("<!-- codec-errors:begin -->")
    print(frame_table())
    print("<!-- codec-errors:end -->\n")
    print("<!-- body-errors:begin -->")
    print(body_table())
    print("<!-- body-errors:end -->\n")
    print("<!-- batch-errors:begin -->")
    print(batch_table())
    print("<!-- batch-errors:end -->")
