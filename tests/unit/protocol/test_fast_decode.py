"""The fast decoders (msgspec header, the common JOB body) accept and refuse
exactly what the checked msgpack path does, with the same errors."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import codec
from operone_zmq.protocol.bodies import JobRequest

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
