"""Wire protocol v1: message bodies (operone_zmq.protocol.bodies).

A round-trip table for every body class (alone and inside a whole message),
defaults and packing details, a malformed-input table asserting the exception
class and a message fragment, and a seeded property-style test: random bytes
and random msgpack maps never make unpack() raise anything but ProtocolError.
"""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack
import pytest

from operone_zmq.errors import ProtocolError
from operone_zmq.protocol import (
    TAG,
    Cancel,
    Disconnect,
    ErrorBody,
    Header,
    Heartbeat,
    JobRequest,
    MsgType,
    Progress,
    Query,
    Ready,
    ResultBody,
    ToolInfo,
    decode,
    encode,
    pack_value,
    unpack_value,
)
from operone_zmq.protocol.bodies import (
    MAX_LSAS_PER_MESSAGE,
    Bye,
    Hello,
    Ping,
    Welcome,
    pack_lsas,
    unpack_lsas,
)
from operone_zmq.protocol.limits import MAX_JOB_TIMEOUT

#: The body class of each message type that has one in v1.
BODY_OF: dict[MsgType, Any] = {
    MsgType.JOB: JobRequest,
    MsgType.RESULT: ResultBody,
    MsgType.ERROR: ErrorBody,
    MsgType.CANCEL: Cancel,
    MsgType.PROGRESS: Progress,
    MsgType.READY: Ready,
    MsgType.HEARTBEAT: Heartbeat,
    MsgType.DISCONNECT: Disconnect,
    MsgType.QUERY: Query,
    # peer mesh (broker <-> broker)
    MsgType.HELLO: Hello,
    MsgType.WELCOME: Welcome,
    MsgType.BYE: Bye,
    MsgType.PING: Ping,
    MsgType.PONG: Ping,
}
ALL_BODIES: list[Any] = list(dict.fromkeys(BODY_OF.values()))


def _p(value: Any) -> bytes:
    out: bytes = msgpack.packb(value)
    return out


# ------------------------------------------------------------- round trips
ROUND_TRIPS: list[tuple[str, Any]] = [
    ("JOB minimal", JobRequest("echo")),
    ("JOB args", JobRequest("echo", {"x": 1, "s": "t", "l": [1, 2.5, None], "m": {"k": True},
                                     "b": b"\x00\xff"})),
    ("JOB every field", JobRequest("shell", {"cmd": ["ls"]}, timeout=12.5, on="node-b",
                                   caps=("gpu", "linux"), retries=3, idempotent=False)),
    ("JOB limits", JobRequest("t" * 64, timeout=MAX_JOB_TIMEOUT, on="n" * 64,
                              caps=tuple(f"c{i}" for i in range(64)), retries=100)),
    ("RESULT minimal", ResultBody(None)),
    ("RESULT value", ResultBody({"out": [1, 2, {"x": b"raw"}], "n": -5}, "node-a", 0.25, 2)),
    ("RESULT int-keyed map", ResultBody({1: "one", 2: "two"}, "n")),
    ("RESULT big int", ResultBody(2**64 - 1)),
    ("ERROR minimal", ErrorBody("tool_failed", "")),
    ("ERROR every field", ErrorBody("tool_failed", "ValueError: no", "ValueError", "node-a",
                                    {"code": "x", "n": 1, "l": [1]})),
    ("ERROR limits", ErrorBody("c" * 64, "m" * 65536, "T" * 256, "n" * 64)),
    ("READY minimal", Ready("w1", ())),
    ("READY every field", Ready("w1", (ToolInfo("echo", "Echo the args"), ToolInfo("sleep")),
                                ("gpu",), slots=8, pid=4242)),
    ("READY limits", Ready("w" * 64, (ToolInfo("t" * 64, "d" * 1024),
                                      *(ToolInfo(f"t{i}") for i in range(4095))),
                           tuple(f"c{i}" for i in range(64)), slots=100_000, pid=2**31)),
    ("READY one slot", Ready("w1", (ToolInfo("echo"),), slots=1)),
    ("HEARTBEAT", Heartbeat()),
    ("HEARTBEAT running", Heartbeat(17)),
    ("HEARTBEAT max", Heartbeat(2**31)),
    ("DISCONNECT", Disconnect()),
    ("DISCONNECT reason", Disconnect("unknown worker; send READY")),
    ("DISCONNECT max", Disconnect("r" * 1024)),
    ("CANCEL", Cancel()),
    ("CANCEL reason", Cancel("cancelled by the client")),
    ("PROGRESS empty", Progress()),
    ("PROGRESS fraction", Progress(fraction=0.5, message="half way")),
    ("PROGRESS bounds", Progress(fraction=0.0)),
    ("PROGRESS one", Progress(fraction=1.0)),
    ("PROGRESS stdout", Progress(stream="stdout", data="line 1\n")),
    ("PROGRESS stderr", Progress(stream="stderr", data="e" * (1 << 20))),
    ("QUERY", Query("stats")),
    ("QUERY args", Query("route", {"to": "node-b", "n": 2})),
    ("HELLO minimal", Hello("node-a")),
    ("HELLO every field", Hello("node-a", "Node A", "lab", "eyJhbGciOi.token.sig")),
    ("HELLO limits", Hello("n" * 64, "N" * 256, "c" * 64, "t" * 8192)),
    ("WELCOME", Welcome("node-b", "Node B", "lab")),
    ("HELLO revision 9", Hello("node-a", batch=True, sig_in_tag=True)),
    ("WELCOME revision 9", Welcome("node-b", batch=True, sig_in_tag=True)),
    ("BYE", Bye()),
    ("BYE reason", Bye("no session: send HELLO", "no_session")),
    ("PING", Ping(0)),
    ("PING max", Ping(2**63 - 1)),
]


@pytest.mark.parametrize("body", [c[1] for c in ROUND_TRIPS], ids=[c[0] for c in ROUND_TRIPS])
def test_body_round_trip(body: Any) -> None:
    raw = body.pack()
    assert type(raw) is bytes
    assert type(body).unpack(raw) == body


@pytest.mark.parametrize("body", [c[1] for c in ROUND_TRIPS], ids=[c[0] for c in ROUND_TRIPS])
def test_whole_message_round_trip(body: Any) -> None:
    t = next(t for t, c in BODY_OF.items() if c is type(body))
    h = Header(int(t), "m-1", "src", "", 32, 1_700_000_000_000, 1, None)
    msg = decode([b"\x00\x01\x02\x03\x04", *encode(h, body.pack())], 1)
    assert msg.header == h
    assert BODY_OF[MsgType(msg.header.type)].unpack(msg.body) == body


def test_every_body_class_is_covered() -> None:
    assert {type(b) for _, b in ROUND_TRIPS} == set(ALL_BODIES)


def test_every_message_type_has_a_body_codec() -> None:
    # LSA: pack_lsas/unpack_lsas; BROADCAST and REPLY: any msgpack value;
    # BATCH: protocol/batch.py.
    other = {MsgType.LSA, MsgType.BROADCAST, MsgType.REPLY, MsgType.BATCH}
    assert set(MsgType) == other | set(BODY_OF)


LSAS = [{"origin": "a", "seq": 1, "links": [["b", 1.5]]}, {"origin": "b", "seq": 2}]


@pytest.mark.parametrize("lsas", [[], LSAS, [{"origin": "x"}] * MAX_LSAS_PER_MESSAGE],
                         ids=["empty", "two", "max"])
def test_lsa_list_round_trip(lsas: list[Any]) -> None:
    h = Header(int(MsgType.LSA), "n.1", "a", "b", 32, 0, 0, None)
    msg = decode(encode(h, pack_lsas(lsas)))
    assert unpack_lsas(msg.body) == lsas


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"\xc1", "body is not valid msgpack"),
    (b"", "body is not valid msgpack"),
    (msgpack.packb({"origin": "a"}), "LSA body must be a list of at most 256 LSAs"),
    (msgpack.packb("a"), "LSA body must be a list of at most 256 LSAs"),
    (msgpack.packb([{}] * (MAX_LSAS_PER_MESSAGE + 1)), "LSA body must be a list of at most 256"),
], ids=["not msgpack", "empty", "a map", "a string", "257 LSAs"])
def test_lsa_list_rejects(raw: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        unpack_lsas(raw)
    assert type(ei.value) is ProtocolError
    assert fragment in str(ei.value)


@pytest.mark.parametrize("value", [None, 0, "text", b"bin", [1, [2]], {"k": {1: "int key"}}])
def test_broadcast_and_reply_bodies_are_any_value(value: Any) -> None:
    h = Header(int(MsgType.BROADCAST), "b-1", "a", "", 32, 0, 0, None)
    assert unpack_value(decode(encode(h, pack_value(value))).body) == value


# ------------------------------------------------------ defaults & packing
def test_job_defaults_and_minimal_encoding() -> None:
    assert JobRequest.unpack(_p({"tool": "echo"})) == JobRequest(
        "echo", {}, None, None, (), 0, True)
    # Defaults are left out of the encoding.
    assert msgpack.unpackb(JobRequest("echo", {"x": 1}).pack()) == {"tool": "echo",
                                                                      "args": {"x": 1}}
    full = msgpack.unpackb(JobRequest("e", {}, 5.0, "n", ("c",), 2, False).pack())
    assert full == {"tool": "e", "args": {}, "timeout": 5.0, "on": "n", "caps": ["c"],
                    "retries": 2, "idem": False}


def test_job_optional_nil_means_absent() -> None:
    j = JobRequest.unpack(_p({"tool": "echo", "timeout": None, "on": None, "caps": None}))
    assert (j.timeout, j.on, j.caps) == (None, None, ())


def test_job_timeout_accepts_an_integer() -> None:
    j = JobRequest.unpack(_p({"tool": "echo", "timeout": 5}))
    assert j.timeout == 5.0
    assert type(j.timeout) is float


def test_result_defaults() -> None:
    assert ResultBody.unpack(_p({"value": None})) == ResultBody(None, "", 0.0, 1)
    r = ResultBody.unpack(_p({"value": 1, "duration": 2}))
    assert type(r.duration) is float
    assert msgpack.unpackb(ResultBody(1).pack()) == {"value": 1, "node": "", "duration": 0.0,
                                                      "attempts": 1}


def test_error_defaults_and_empty_strings_become_none() -> None:
    e = ErrorBody.unpack(_p({"code": "timeout"}))
    assert e == ErrorBody("timeout", "", None, None, {})
    e = ErrorBody.unpack(_p({"code": "x", "message": None, "type": "", "node": ""}))
    assert (e.message, e.type, e.node) == ("", None, None)
    assert msgpack.unpackb(ErrorBody("x", "m").pack()) == {"code": "x", "message": "m"}


def test_ready_defaults_and_tool_description_is_clipped() -> None:
    assert Ready.unpack(_p({"worker": "w"})) == Ready("w", (), (), 64, 0)
    r = Ready.unpack(_p({"worker": "w", "tools": [["t", "d" * 5000]]}))
    assert r.tools == (ToolInfo("t", "d" * 1024),)
    assert msgpack.unpackb(Ready("w", (ToolInfo("t", "d"),)).pack()) == {
        "worker": "w", "tools": [["t", "d"]], "caps": [], "slots": 64, "pid": 0}


@pytest.mark.parametrize("cls", [Heartbeat, Disconnect, Cancel, Bye])
def test_empty_body_means_defaults(cls: Any) -> None:
    assert cls.unpack(b"") == cls()
    assert cls.unpack(_p({})) == cls()


def test_progress_empty_strings_become_none() -> None:
    p = Progress.unpack(_p({"message": "", "data": "", "stream": None}))
    assert p == Progress()
    assert Progress().pack() == b"\x80"


def test_query_defaults() -> None:
    assert Query.unpack(_p({"what": "ping"})) == Query("ping", {})


@pytest.mark.parametrize("cls", ALL_BODIES, ids=lambda c: c.__name__)
def test_unknown_keys_are_ignored(cls: Any) -> None:
    required: dict[Any, dict[str, Any]] = {
        JobRequest: {"tool": "echo"}, ResultBody: {"value": 1}, ErrorBody: {"code": "x"},
        Ready: {"worker": "w"}, Query: {"what": "stats"},
    }
    required.update({Hello: {"node": "a", "cluster": "c"},
                     Welcome: {"node": "b", "cluster": "c"}, Ping: {"seq": 1}})
    minimal = required.get(cls, {})
    extended = {**minimal, "zz_future_field": [1, {"deep": None}], "v2": True}
    assert cls.unpack(_p(extended)) == cls.unpack(_p(minimal))


def test_pack_value_and_unpack_value() -> None:
    assert unpack_value(pack_value({"a": [1, 2], 3: b"x"})) == {"a": [1, 2], 3: b"x"}
    with pytest.raises(ProtocolError, match="cannot be encoded as msgpack"):
        pack_value(object())
    with pytest.raises(ProtocolError, match="cannot be encoded as msgpack"):
        pack_value({1, 2})
    assert unpack_value(pack_value(2**64)) == 2**64  # the big integer extension
    with pytest.raises(ProtocolError, match="cannot be encoded as msgpack"):
        pack_value(1 << (8 * 64 * 1024))
    with pytest.raises(ProtocolError, match="body is not valid msgpack"):
        unpack_value(b"\xc1")
    with pytest.raises(ProtocolError, match="body is not valid msgpack"):
        unpack_value(b"")


def test_unencodable_result_value_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="cannot be encoded"):
        ResultBody(object()).pack()


# -------------------------------------------------------------- malformed
_NOT_MSGPACK = b"\xc1"
_L = 65  # one past MAX_ID_LEN

BAD: list[tuple[str, Any, bytes, str]] = [
    # ---------------------------------------------------------------- JOB
    ("JOB not msgpack", JobRequest, _NOT_MSGPACK, "JOB body is not valid msgpack"),
    ("JOB empty", JobRequest, b"", "JOB body is not valid msgpack"),
    ("JOB trailing bytes", JobRequest, _p({"tool": "e"}) + b"\x00",
     "JOB body is not valid msgpack"),
    ("JOB an array", JobRequest, _p(["echo", {}]), "JOB body must be a msgpack map"),
    ("JOB a string", JobRequest, _p("echo"), "JOB body must be a msgpack map"),
    ("JOB nil", JobRequest, _p(None), "JOB body must be a msgpack map"),
    ("JOB int map key", JobRequest, _p({1: "x", "tool": "e"}),
     "JOB body must be a msgpack map with string keys"),
    ("JOB no tool", JobRequest, _p({"args": {}}), "JOB: 'tool' is required"),
    ("JOB tool nil", JobRequest, _p({"tool": None}), "JOB: 'tool' is required"),
    ("JOB tool empty", JobRequest, _p({"tool": ""}), "'tool' must be a string of 1..64"),
    ("JOB tool too long", JobRequest, _p({"tool": "t" * _L}), "'tool' must be a string of 1..64"),
    ("JOB tool int", JobRequest, _p({"tool": 1}), "'tool' must be a string of 1..64"),
    ("JOB tool bin", JobRequest, _p({"tool": b"echo"}), "'tool' must be a string of 1..64"),
    ("JOB args list", JobRequest, _p({"tool": "e", "args": [1]}), "'args' must be a map"),
    ("JOB args str", JobRequest, _p({"tool": "e", "args": "x=1"}), "'args' must be a map"),
    ("JOB args int", JobRequest, _p({"tool": "e", "args": 1}), "'args' must be a map"),
    ("JOB args bin keys", JobRequest, _p({"tool": "e", "args": {b"x": 1}}),
     "JOB: argument names must be strings"),
    ("JOB args int keys", JobRequest, _p({"tool": "e", "args": {1: 1}}),
     "JOB: argument names must be strings"),
    ("JOB timeout zero", JobRequest, _p({"tool": "e", "timeout": 0}), "'timeout' must be positive"),
    ("JOB timeout zero float", JobRequest, _p({"tool": "e", "timeout": 0.0}),
     "'timeout' must be positive"),
    ("JOB timeout negative", JobRequest, _p({"tool": "e", "timeout": -1}),
     "'timeout' must be a number in 0.0..604800.0"),
    ("JOB timeout > a week", JobRequest, _p({"tool": "e", "timeout": MAX_JOB_TIMEOUT + 1}),
     "'timeout' must be a number in"),
    ("JOB timeout nan", JobRequest, _p({"tool": "e", "timeout": math.nan}),
     "'timeout' must be a number in"),
    ("JOB timeout inf", JobRequest, _p({"tool": "e", "timeout": math.inf}),
     "'timeout' must be a number in"),
    ("JOB timeout str", JobRequest, _p({"tool": "e", "timeout": "5"}),
     "'timeout' must be a number in"),
    ("JOB timeout bool", JobRequest, _p({"tool": "e", "timeout": True}),
     "'timeout' must be a number in"),
    ("JOB on empty", JobRequest, _p({"tool": "e", "on": ""}), "'on' must be a string of 1..64"),
    ("JOB on too long", JobRequest, _p({"tool": "e", "on": "n" * _L}),
     "'on' must be a string of 1..64"),
    ("JOB on int", JobRequest, _p({"tool": "e", "on": 3}), "'on' must be a string of 1..64"),
    ("JOB caps str", JobRequest, _p({"tool": "e", "caps": "gpu"}),
     "'caps' must be a list of at most 64 names"),
    ("JOB caps map", JobRequest, _p({"tool": "e", "caps": {"gpu": 1}}),
     "'caps' must be a list of at most 64 names"),
    ("JOB 65 caps", JobRequest, _p({"tool": "e", "caps": [f"c{i}" for i in range(65)]}),
     "'caps' must be a list of at most 64 names"),
    ("JOB cap int", JobRequest, _p({"tool": "e", "caps": [1]}),
     "'caps' entries must be names of 1..64 chars"),
    ("JOB cap empty", JobRequest, _p({"tool": "e", "caps": [""]}),
     "'caps' entries must be names"),
    ("JOB cap too long", JobRequest, _p({"tool": "e", "caps": ["c" * _L]}),
     "'caps' entries must be names"),
    ("JOB retries -1", JobRequest, _p({"tool": "e", "retries": -1}),
     "'retries' must be an integer in 0..100"),
    ("JOB retries 101", JobRequest, _p({"tool": "e", "retries": 101}),
     "'retries' must be an integer in 0..100"),
    ("JOB retries float", JobRequest, _p({"tool": "e", "retries": 1.0}),
     "'retries' must be an integer"),
    ("JOB retries bool", JobRequest, _p({"tool": "e", "retries": True}),
     "'retries' must be an integer"),
    ("JOB retries nil", JobRequest, _p({"tool": "e", "retries": None}),
     "'retries' must be an integer"),
    ("JOB idem int", JobRequest, _p({"tool": "e", "idem": 0}), "'idem' must be a boolean"),
    ("JOB idem str", JobRequest, _p({"tool": "e", "idem": "false"}), "'idem' must be a boolean"),
    # ------------------------------------------------------------- RESULT
    ("RESULT not msgpack", ResultBody, _NOT_MSGPACK, "RESULT body is not valid msgpack"),
    ("RESULT empty", ResultBody, b"", "RESULT body is not valid msgpack"),
    ("RESULT an array", ResultBody, _p([1]), "RESULT body must be a map with a 'value'"),
    ("RESULT bare value", ResultBody, _p(42), "RESULT body must be a map with a 'value'"),
    ("RESULT no value", ResultBody, _p({"node": "n"}), "RESULT body must be a map with a 'value'"),
    ("RESULT node int", ResultBody, _p({"value": 1, "node": 1}), "'node' must be a string"),
    ("RESULT node nil", ResultBody, _p({"value": 1, "node": None}), "'node' must be a string"),
    ("RESULT duration str", ResultBody, _p({"value": 1, "duration": "1"}),
     "'duration' must be a number"),
    ("RESULT duration bool", ResultBody, _p({"value": 1, "duration": True}),
     "'duration' must be a number"),
    ("RESULT attempts float", ResultBody, _p({"value": 1, "attempts": 1.0}),
     "'attempts' must be an integer"),
    ("RESULT attempts str", ResultBody, _p({"value": 1, "attempts": "1"}),
     "'attempts' must be an integer"),
    ("RESULT attempts bool", ResultBody, _p({"value": 1, "attempts": True}),
     "'attempts' must be an integer"),
    # -------------------------------------------------------------- ERROR
    ("ERROR not msgpack", ErrorBody, _NOT_MSGPACK, "ERROR body is not valid msgpack"),
    ("ERROR an array", ErrorBody, _p(["timeout", "m"]), "ERROR body must be a msgpack map"),
    ("ERROR no code", ErrorBody, _p({"message": "m"}), "ERROR: 'code' is required"),
    ("ERROR code empty", ErrorBody, _p({"code": ""}), "'code' must be a string of 1..64"),
    ("ERROR code too long", ErrorBody, _p({"code": "c" * _L}), "'code' must be a string of 1..64"),
    ("ERROR code int", ErrorBody, _p({"code": 500}), "'code' must be a string of 1..64"),
    ("ERROR message int", ErrorBody, _p({"code": "x", "message": 1}),
     "'message' must be a string of at most 65536"),
    ("ERROR message too long", ErrorBody, _p({"code": "x", "message": "m" * 65537}),
     "'message' must be a string of at most 65536"),
    ("ERROR type too long", ErrorBody, _p({"code": "x", "type": "T" * 257}),
     "'type' must be a string of at most 256"),
    ("ERROR type int", ErrorBody, _p({"code": "x", "type": 1}), "'type' must be a string"),
    ("ERROR node too long", ErrorBody, _p({"code": "x", "node": "n" * _L}),
     "'node' must be a string of at most 64"),
    ("ERROR details list", ErrorBody, _p({"code": "x", "details": [1]}),
     "ERROR: 'details' must be a map"),
    ("ERROR details str", ErrorBody, _p({"code": "x", "details": "d"}),
     "ERROR: 'details' must be a map"),
    # -------------------------------------------------------------- READY
    ("READY not msgpack", Ready, _NOT_MSGPACK, "READY body is not valid msgpack"),
    ("READY an array", Ready, _p(["w", []]), "READY body must be a msgpack map"),
    ("READY no worker", Ready, _p({"tools": []}), "READY: 'worker' is required"),
    ("READY worker empty", Ready, _p({"worker": ""}), "'worker' must be a string of 1..64"),
    ("READY worker too long", Ready, _p({"worker": "w" * _L}),
     "'worker' must be a string of 1..64"),
    ("READY worker int", Ready, _p({"worker": 1}), "'worker' must be a string of 1..64"),
    ("READY tools map", Ready, _p({"worker": "w", "tools": {"echo": ""}}),
     "READY: 'tools' must be a list of [name, description]"),
    ("READY tools str", Ready, _p({"worker": "w", "tools": "echo"}),
     "'tools' must be a list of [name, description]"),
    ("READY 4097 tools", Ready, _p({"worker": "w", "tools": [[f"t{i}", ""] for i in range(4097)]}),
     "'tools' must be a list of [name, description]"),
    ("READY tool is a name", Ready, _p({"worker": "w", "tools": ["echo"]}),
     "READY: each tool must be [name, description]"),
    ("READY tool is a map", Ready, _p({"worker": "w", "tools": [{"name": "echo"}]}),
     "each tool must be [name, description]"),
    ("READY tool of 1", Ready, _p({"worker": "w", "tools": [["echo"]]}),
     "each tool must be [name, description]"),
    ("READY tool of 3", Ready, _p({"worker": "w", "tools": [["echo", "", 1]]}),
     "each tool must be [name, description]"),
    ("READY tool name int", Ready, _p({"worker": "w", "tools": [[1, ""]]}),
     "each tool must be [name, description]"),
    ("READY tool name empty", Ready, _p({"worker": "w", "tools": [["", ""]]}),
     "each tool must be [name, description]"),
    ("READY tool name too long", Ready, _p({"worker": "w", "tools": [["t" * _L, ""]]}),
     "each tool must be [name, description]"),
    ("READY tool description nil", Ready, _p({"worker": "w", "tools": [["echo", None]]}),
     "each tool must be [name, description]"),
    ("READY caps too many", Ready, _p({"worker": "w", "caps": [str(i) for i in range(65)]}),
     "READY: 'caps' must be a list of at most 64 names"),
    ("READY cap int", Ready, _p({"worker": "w", "caps": [7]}), "'caps' entries must be names"),
    ("READY slots 0", Ready, _p({"worker": "w", "slots": 0}),
     "'slots' must be an integer in 1..100000"),
    ("READY slots too many", Ready, _p({"worker": "w", "slots": 100_001}),
     "'slots' must be an integer in 1..100000"),
    ("READY slots str", Ready, _p({"worker": "w", "slots": "8"}), "'slots' must be an integer"),
    ("READY slots bool", Ready, _p({"worker": "w", "slots": True}), "'slots' must be an integer"),
    ("READY pid -1", Ready, _p({"worker": "w", "pid": -1}),
     "'pid' must be an integer in 0..2147483648"),
    ("READY pid too big", Ready, _p({"worker": "w", "pid": 2**31 + 1}),
     "'pid' must be an integer in 0..2147483648"),
    ("READY pid float", Ready, _p({"worker": "w", "pid": 1.0}), "'pid' must be an integer"),
    # ---------------------------------------------------------- HEARTBEAT
    ("HEARTBEAT not msgpack", Heartbeat, _NOT_MSGPACK, "HEARTBEAT body is not valid msgpack"),
    ("HEARTBEAT an int", Heartbeat, _p(3), "HEARTBEAT body must be a msgpack map"),
    ("HEARTBEAT nil", Heartbeat, _p(None), "HEARTBEAT body must be a msgpack map"),
    ("HEARTBEAT running -1", Heartbeat, _p({"running": -1}),
     "'running' must be an integer in 0..2147483648"),
    ("HEARTBEAT running too big", Heartbeat, _p({"running": 2**31 + 1}),
     "'running' must be an integer in 0..2147483648"),
    ("HEARTBEAT running float", Heartbeat, _p({"running": 1.5}), "'running' must be an integer"),
    ("HEARTBEAT running str", Heartbeat, _p({"running": "1"}), "'running' must be an integer"),
    # --------------------------------------------------- DISCONNECT, CANCEL
    ("DISCONNECT not msgpack", Disconnect, _NOT_MSGPACK, "DISCONNECT body is not valid msgpack"),
    ("DISCONNECT a string", Disconnect, _p("bye"), "DISCONNECT body must be a msgpack map"),
    ("DISCONNECT reason int", Disconnect, _p({"reason": 1}),
     "'reason' must be a string of at most 1024"),
    ("DISCONNECT reason too long", Disconnect, _p({"reason": "r" * 1025}),
     "'reason' must be a string of at most 1024"),
    ("CANCEL not msgpack", Cancel, _NOT_MSGPACK, "CANCEL body is not valid msgpack"),
    ("CANCEL an array", Cancel, _p(["why"]), "CANCEL body must be a msgpack map"),
    ("CANCEL reason int", Cancel, _p({"reason": 1}), "'reason' must be a string of at most 1024"),
    ("CANCEL reason too long", Cancel, _p({"reason": "r" * 1025}),
     "'reason' must be a string of at most 1024"),
    # ----------------------------------------------------------- PROGRESS
    ("PROGRESS empty body", Progress, b"", "PROGRESS body is not valid msgpack"),
    ("PROGRESS not msgpack", Progress, _NOT_MSGPACK, "PROGRESS body is not valid msgpack"),
    ("PROGRESS an array", Progress, _p([0.5]), "PROGRESS body must be a msgpack map"),
    ("PROGRESS stream stdin", Progress, _p({"stream": "stdin", "data": "x"}),
     "'stream' must be 'stdout' or 'stderr'"),
    ("PROGRESS stream upper case", Progress, _p({"stream": "STDOUT"}),
     "'stream' must be 'stdout' or 'stderr'"),
    ("PROGRESS stream empty", Progress, _p({"stream": ""}), "'stream' must be 'stdout' or"),
    ("PROGRESS stream int", Progress, _p({"stream": 1}), "'stream' must be 'stdout' or"),
    ("PROGRESS stream bin", Progress, _p({"stream": b"stdout"}), "'stream' must be 'stdout' or"),
    ("PROGRESS stream list", Progress, _p({"stream": ["stdout"]}), "'stream' must be 'stdout'"),
    ("PROGRESS fraction < 0", Progress, _p({"fraction": -0.1}),
     "'fraction' must be a number in 0.0..1.0"),
    ("PROGRESS fraction > 1", Progress, _p({"fraction": 1.01}),
     "'fraction' must be a number in 0.0..1.0"),
    ("PROGRESS fraction nan", Progress, _p({"fraction": math.nan}), "'fraction' must be a number"),
    ("PROGRESS fraction str", Progress, _p({"fraction": "0.5"}), "'fraction' must be a number"),
    ("PROGRESS fraction bool", Progress, _p({"fraction": True}), "'fraction' must be a number"),
    ("PROGRESS message int", Progress, _p({"message": 5}),
     "'message' must be a string of at most 4096"),
    ("PROGRESS message too long", Progress, _p({"message": "m" * 4097}),
     "'message' must be a string of at most 4096"),
    ("PROGRESS data too long", Progress, _p({"stream": "stdout", "data": "d" * ((1 << 20) + 1)}),
     "'data' must be a string of at most 1048576"),
    ("PROGRESS data bin", Progress, _p({"stream": "stdout", "data": b"raw"}),
     "'data' must be a string"),
    # -------------------------------------------------------------- QUERY
    ("QUERY not msgpack", Query, _NOT_MSGPACK, "QUERY body is not valid msgpack"),
    ("QUERY a string", Query, _p("stats"), "QUERY body must be a msgpack map"),
    ("QUERY no what", Query, _p({"args": {}}), "QUERY: 'what' is required"),
    ("QUERY what empty", Query, _p({"what": ""}), "'what' must be a string of 1..64"),
    ("QUERY what too long", Query, _p({"what": "w" * _L}), "'what' must be a string of 1..64"),
    ("QUERY what int", Query, _p({"what": 1}), "'what' must be a string of 1..64"),
    ("QUERY args list", Query, _p({"what": "stats", "args": []}), "QUERY: 'args' must be a map"),
    ("QUERY args str", Query, _p({"what": "stats", "args": "x"}), "QUERY: 'args' must be a map"),
    # ---------------------------------------------------- HELLO, WELCOME
    ("HELLO not msgpack", Hello, _NOT_MSGPACK, "HELLO body is not valid msgpack"),
    ("HELLO an array", Hello, _p(["a"]), "HELLO body must be a msgpack map"),
    ("HELLO no node", Hello, _p({"cluster": "c"}), "HELLO: 'node' is required"),
    ("HELLO node too long", Hello, _p({"node": "n" * _L, "cluster": "c"}),
     "'node' must be a string of 1..64"),
    ("HELLO no cluster", Hello, _p({"node": "a"}), "HELLO: 'cluster' is required"),
    ("HELLO name too long", Hello, _p({"node": "a", "cluster": "c", "name": "n" * 257}),
     "'name' must be a string of at most 256"),
    ("HELLO token int", Hello, _p({"node": "a", "cluster": "c", "token": 1}),
     "'token' must be a string of at most 8192"),
    ("HELLO token too long", Hello, _p({"node": "a", "cluster": "c", "token": "t" * 8193}),
     "'token' must be a string of at most 8192"),
    ("WELCOME not msgpack", Welcome, _NOT_MSGPACK, "WELCOME body is not valid msgpack"),
    ("WELCOME no node", Welcome, _p({"cluster": "c"}), "WELCOME: 'node' is required"),
    ("WELCOME no cluster", Welcome, _p({"node": "b"}), "WELCOME: 'cluster' is required"),
    ("WELCOME name int", Welcome, _p({"node": "b", "cluster": "c", "name": 1}),
     "'name' must be a string"),
    # ------------------------------------------------------ BYE, PING
    ("BYE not msgpack", Bye, _NOT_MSGPACK, "BYE body is not valid msgpack"),
    ("BYE a string", Bye, _p("bye"), "BYE body must be a msgpack map"),
    ("BYE reason too long", Bye, _p({"reason": "r" * 1025}),
     "'reason' must be a string of at most 1024"),
    ("BYE code too long", Bye, _p({"code": "c" * 65}), "'code' must be a string of at most 64"),
    ("BYE code int", Bye, _p({"code": 1}), "'code' must be a string"),
    ("PING empty body", Ping, b"", "PING body is not valid msgpack"),
    ("PING an int", Ping, _p(1), "PING body must be a msgpack map"),
    ("PING seq -1", Ping, _p({"seq": -1}), "'seq' must be an integer in 0..9223372036854775807"),
    ("PING seq float", Ping, _p({"seq": 1.0}), "'seq' must be an integer"),
    ("PING seq str", Ping, _p({"seq": "1"}), "'seq' must be an integer"),
]


@pytest.mark.parametrize(("cls", "raw", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_unpack_rejects(cls: Any, raw: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        cls.unpack(raw)
    assert type(ei.value) is ProtocolError
    assert fragment in str(ei.value)


def test_every_body_class_has_malformed_cases() -> None:
    assert {c[1] for c in BAD} == set(ALL_BODIES)


BOUNDARIES: list[tuple[str, Any, dict[str, Any]]] = [
    ("JOB timeout one week", JobRequest, {"tool": "e", "timeout": MAX_JOB_TIMEOUT}),
    ("JOB tiny timeout", JobRequest, {"tool": "e", "timeout": 1e-9}),
    ("JOB retries 0", JobRequest, {"tool": "e", "retries": 0}),
    ("JOB 64 caps", JobRequest, {"tool": "e", "caps": ["c" * 64] * 64}),
    ("JOB args nested lists", JobRequest,
     {"tool": "e", "args": {"l": [[1, [2]]]}}),
    ("RESULT negative duration (not range checked)", ResultBody, {"value": 1, "duration": -1}),
    ("RESULT long node (not length checked)", ResultBody, {"value": 1, "node": "n" * 200}),
    ("ERROR message 65536", ErrorBody, {"code": "x", "message": "m" * 65536}),
    ("READY 4096 tools", Ready, {"worker": "w", "tools": [[f"t{i}", ""] for i in range(4096)]}),
    ("READY slots 1", Ready, {"worker": "w", "slots": 1}),
    ("READY pid 2**31", Ready, {"worker": "w", "pid": 2**31}),
    ("HEARTBEAT running 0", Heartbeat, {"running": 0}),
    ("PROGRESS fraction as int", Progress, {"fraction": 1}),
    ("PROGRESS data at the limit", Progress, {"stream": "stderr", "data": "d" * (1 << 20)}),
    ("QUERY unknown kind (not checked here)", Query, {"what": "no-such-query"}),
    ("HELLO token nil", Hello, {"node": "a", "cluster": "c", "token": None}),
    ("BYE empty map", Bye, {}),
    ("PING no seq", Ping, {}),
]


@pytest.mark.parametrize(("cls", "m"), [c[1:] for c in BOUNDARIES],
                         ids=[c[0] for c in BOUNDARIES])
def test_unpack_accepts_boundaries(cls: Any, m: dict[str, Any]) -> None:
    cls.unpack(_p(m))


# ------------------------------------------------------------ properties
_KEYS = ["tool", "args", "timeout", "on", "caps", "retries", "idem", "value", "node",
         "duration", "attempts", "code", "message", "type", "details", "worker", "tools",
         "slots", "pid", "running", "reason", "fraction", "stream", "data", "what", "x",
         "name", "cluster", "token", "seq"]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.randrange(14 if depth < 3 else 10)
    if r == 0:
        return None
    if r == 1:
        return rng.random() < 0.5
    if r == 2:
        return rng.choice((0, 1, -1, 64, 100, 101, 2**31, 2**31 + 1, 2**63 - 1, -(2**63)))
    if r == 3:
        return rng.choice((0.0, 0.5, 1.0, -0.1, 1e300, math.nan, math.inf, -math.inf))
    if r == 4:
        return rng.choice(("", "stdout", "stderr", "echo", "x" * 64, "y" * 65, "\u00e9\u4e2d"))
    if r == 5:
        return rng.randbytes(rng.randrange(0, 8))
    if r == 6:
        return "s" * rng.choice((1024, 1025, 4097))
    if r in (7, 8, 9):
        return rng.choice(_KEYS)
    if r in (10, 11):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {_random_key(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _random_key(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.8:
        return rng.choice(_KEYS)
    if r < 0.9:
        return rng.randbytes(2)
    return rng.randrange(-3, 3)


#: A valid map per body class, for the "mostly valid, one key changed" inputs.
_SEEDS: list[dict[str, Any]] = [
    {"tool": "echo", "args": {"x": 1}}, {"value": 1, "node": "n"}, {"code": "timeout"},
    {"worker": "w", "tools": [["t", ""]]}, {"what": "stats"}, {"node": "a", "cluster": "c"},
    {"seq": 3}, {"reason": "r"}, {"running": 1}, {"fraction": 0.5, "stream": "stdout"},
]


def _random_body(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.25:
        m = dict(rng.choice(_SEEDS))
        if rng.random() < 0.7:
            m[_random_key(rng)] = _random_value(rng)
        return _p(m)
    if r < 0.45:
        return rng.randbytes(rng.randrange(0, 48))
    if r < 0.55:
        return _p(_random_value(rng))
    m = {_random_key(rng): _random_value(rng) for _ in range(rng.randrange(0, 6))}
    raw = _p(m)
    if rng.random() < 0.1:  # truncate or corrupt
        b = bytearray(raw)
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        raw = bytes(b[: rng.randrange(len(b) + 1)])
    return raw


def test_random_bodies_raise_only_protocol_errors() -> None:
    rng = random.Random(20240601)
    accepted = dict.fromkeys(ALL_BODIES, 0)
    for _ in range(2000):
        raw = _random_body(rng)
        for cls in ALL_BODIES:
            try:
                body = cls.unpack(raw)
            except ProtocolError:
                continue
            accepted[cls] += 1
            # Whatever is accepted can be sent again.
            assert type(body.pack()) is bytes
        try:
            unpack_lsas(raw)
        except ProtocolError:
            pass
    # The generator reaches the success path of every body class.
    assert all(n > 0 for n in accepted.values()), accepted


def test_random_whole_messages_raise_only_protocol_errors() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        t = rng.choice(list(BODY_OF))
        h = Header(int(t), "m", "", "", 1, 0, rng.randrange(4), None)
        frames = [TAG, msgpack.packb(list(h)), _random_body(rng)]
        try:
            msg = decode(frames)
            BODY_OF[MsgType(msg.header.type)].unpack(msg.body)
        except ProtocolError:
            pass


def test_job_args_may_hold_maps_with_integer_keys() -> None:
    """Nested argument values are any msgpack maps, as results are."""
    req = JobRequest.unpack(_p({"tool": "e", "args": {"x": {1: "a"}}}))
    assert req.args == {"x": {1: "a"}}


# ------------------------------------------- decode limits (issue 11)
def test_a_long_container_is_refused_at_its_header() -> None:
    import msgpack as _m

    from operone_zmq.protocol.bodies import unpack_value as _uv
    from operone_zmq.protocol.limits import MAX_CONTAINER_LEN

    n = MAX_CONTAINER_LEN + 1
    with pytest.raises(ProtocolError, match="more than 1048576 elements"):
        _uv(b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n)
    with pytest.raises(ProtocolError, match="the data ends too early"):
        _uv(b"\xdd\xff\xff\xff\xff")  # a length beyond the data
    assert len(_uv(_m.packb([0] * MAX_CONTAINER_LEN))) == MAX_CONTAINER_LEN


def test_a_big_job_is_read_as_an_envelope_by_a_broker() -> None:
    from operone_zmq.protocol.bodies import JobRequest as _J
    from operone_zmq.protocol.limits import ENVELOPE_THRESHOLD

    big = _J("echo", {"a": b"x" * ENVELOPE_THRESHOLD, "b": [1]}, timeout=5.0, on="n2",
             caps=("gpu",), retries=2, stream=True).pack()
    env = _J.unpack(big, envelope=True)
    assert env.args_skipped and env.args == {}
    assert (env.tool, env.timeout, env.on, env.caps, env.retries, env.stream) == (
        "echo", 5.0, "n2", ("gpu",), 2, True)
    assert not _J.unpack(big).args_skipped
    small = _J("echo", {"a": 1}).pack()
    assert _J.unpack(small, envelope=True).args == {"a": 1}
    n = 2_000_000  # one array of 2 M empty arrays: stepped over, never built
    bomb = (b"\x82\xa4tool\xa4echo\xa4args\x81\xa1x\xdd" + n.to_bytes(4, "big")
            + b"\x90" * n)
    assert _J.unpack(bomb, envelope=True).args_skipped
    with pytest.raises(ProtocolError, match="more than 1048576 elements"):
        _J.unpack(bomb)
    bad = b"\x82\xa4tool\xa4echo\xa4args\x91" + b"\xc4\x00" * ENVELOPE_THRESHOLD
    with pytest.raises(ProtocolError):
        _J.unpack(bad, envelope=True)


def test_hello_and_welcome_carry_direct_and_default_it_to_false() -> None:
    """Revision 5: ``direct`` round-trips, is absent when false (an older
    body), and must be a boolean."""
    assert Hello.unpack(Hello("n1", direct=True).pack()).direct is True
    assert Welcome.unpack(Welcome("n1", direct=True).pack()).direct is True
    assert "direct" not in msgpack.unpackb(Hello("n1").pack())
    assert Welcome.unpack(Welcome("n1").pack()).direct is False
    bad = msgpack.packb({"node": "n1", "cluster": "operone", "direct": 1})
    with pytest.raises(ProtocolError, match="'direct' must be a boolean"):
        Hello.unpack(bad)
    with pytest.raises(ProtocolError, match="'direct' must be a boolean"):
        Welcome.unpack(bad)


def test_a_body_holds_at_most_max_body_containers_arrays_and_maps() -> None:
    """Each container under MAX_CONTAINER_LEN, but more than
    MAX_BODY_CONTAINERS of them in all: refused as it is built, with the
    fixed reason; as many as the budget allows still decode."""
    from operone_zmq.protocol.bodies import WHY_TOO_MANY, unpack_value
    from operone_zmq.protocol.limits import MAX_BODY_CONTAINERS

    half = MAX_BODY_CONTAINERS // 2
    arr = b"\xdd" + half.to_bytes(4, "big") + b"\x90" * half
    three = b"\x93" + arr * 3  # 1.5 x the budget, plus the outer array
    with pytest.raises(ProtocolError, match=WHY_TOO_MANY):
        unpack_value(three)
    # half - 1 containers each (an array of half - 3 empty arrays and a map):
    # with the outer array and one more empty array, exactly the budget.
    fit = b"\xdd" + (half - 2).to_bytes(4, "big") + b"\x90" * (half - 3) + b"\x80"
    got = unpack_value(b"\x93" + fit + fit + b"\x90")
    assert len(got) == 3 and got[0][-1] == {}  # a map counts as one too
    with pytest.raises(ProtocolError, match=WHY_TOO_MANY):  # one more
        unpack_value(b"\x94" + fit + fit + b"\x90\x90")
    maps = b"\x93" + (b"\xdd" + half.to_bytes(4, "big") + b"\x80" * half) * 3
    with pytest.raises(ProtocolError, match=WHY_TOO_MANY):
        unpack_value(maps)
