"""BrokerCore behaviour that docs/protocol.md now specifies and that needs the
small core/broker.py changes listed in the proto branch's report (the file was
being split when this was written).  Strict xfail: each starts to pass, and so
must lose its mark, when the change is made."""

from __future__ import annotations

import msgpack

from operone_zmq.core.broker import WORKERS, BrokerCore, BrokerLimits
from operone_zmq.core.tool_catalog import tool_catalog
from operone_zmq.core.worker import WorkerCore
from operone_zmq.protocol import TAG, Header, MsgType, Query, decode, encode_header
from operone_zmq.protocol.bodies import ErrorBody, unpack_value
from operone_zmq.testing import FakeClock
from operone_zmq.tools.builtin import builtin_registry
from operone_zmq.tools.spec import ToolsConfig

CLIENT = b"\x00cli"


def _answers(b: BrokerCore) -> list[list[bytes]]:
    out = [f[1:] for sock, f in b.out if sock != WORKERS]
    b.out.clear()
    return out


def test_too_large_header_error_carries_the_request_id() -> None:
    clock = FakeClock()
    b = BrokerCore("n1", limits=BrokerLimits(), now=clock())
    big = msgpack.packb([int(MsgType.QUERY), "q-7", "x" * 2000, "", 32, 0, 0, None])
    b.on_frontend(0, [CLIENT, TAG, big, b""], clock())
    (frames,) = _answers(b)
    msg = decode(frames)
    assert ErrorBody.unpack(msg.body).code == "too_large"
    assert msg.header.id == "q-7"


def test_query_tools_detail_returns_the_catalog() -> None:
    clock = FakeClock()
    b = BrokerCore("n1", limits=BrokerLimits(), now=clock())
    infos = builtin_registry(ToolsConfig()).infos()
    w = WorkerCore("n1.w1", infos, caps=("gpu",), now=clock())
    w.start(clock())
    b.on_worker([b"n1.w1", *w.out.pop(0)], clock())
    b.out.clear()
    q = Query("tools", {"detail": True}).pack()
    h = encode_header(Header(int(MsgType.QUERY), "q1", "c", "", 32, 0, 0, None))
    b.on_frontend(0, [CLIENT, TAG, h, q], clock())
    (frames,) = _answers(b)
    got = unpack_value(decode(frames).body)
    assert got == tool_catalog("n1", [("n1.w1", ("gpu",), infos)])
    # Without detail: the v1 answer, counts.
    b.on_frontend(0, [CLIENT, TAG, h, Query("tools").pack()], clock())
    (frames,) = _answers(b)
    assert unpack_value(decode(frames).body)["sleep"] == 1
