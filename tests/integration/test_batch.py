"""BATCH (protocol v1 revision 7) between real processes: only to who asked.

A v1 client (a raw DEALER that never sends BATCH) and a v1 worker (READY
without ``batch``) only ever receive single messages; a client that sends
BATCHes gets its answers batched under load, through batching workers.
"""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq
from helpers import LocalNode

from operone_zmq.config import load_config, resolve_worker_endpoint
from operone_zmq.protocol import MsgType, decode
from operone_zmq.protocol.batch import MAX_BATCH_SEND, decode_batch, encode_batch, is_batch
from operone_zmq.protocol.bodies import Heartbeat, Ping, Ready, ResultBody, ToolInfo

pytestmark = pytest.mark.integration

#: Seconds any one wait of these tests may take (loaded machine).
WAIT = 20.0


def _job(tool: str, jid: str, args: dict[str, object] | None = None) -> list[bytes]:
    header = msgpack.packb([int(MsgType.JOB), jid, "raw", "", 8, 0, 2, None])
    return [b"OZ\x01", header, msgpack.packb({"tool": tool, "args": args or {}})]


def _client(node: LocalNode, ctx: zmq.Context[zmq.Socket[bytes]]) -> zmq.Socket[bytes]:
    k = node.keys()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_publickey, s.curve_secretkey, s.curve_serverkey = k.public, k.secret, k.server
    s.connect(f"tcp://127.0.0.1:{node.base_port + 2}")
    return s


def _collect(s: zmq.Socket[bytes], want: set[str]) -> tuple[int, int, dict[str, int]]:
    """Read until every job id in ``want`` is answered: (single messages,
    BATCHes, answer type per job id)."""
    singles = batches = 0
    got: dict[str, int] = {}
    deadline = time.monotonic() + WAIT
    while not want <= got.keys():
        left = deadline - time.monotonic()
        assert left > 0 and s.poll(int(left * 1000)), f"{len(want - got.keys())} unanswered"
        frames = s.recv_multipart()
        if is_batch(frames):
            batches += 1
            msgs = decode_batch(frames)
        else:
            singles += 1
            msgs = [frames]
        for m in msgs:
            h = decode(m).header
            if h.type in (MsgType.RESULT, MsgType.ERROR):
                got[h.corr or h.id] = h.type
    return singles, batches, got


def test_v1_client_gets_only_single_messages(node: LocalNode) -> None:
    """A client that never sends BATCH gets every answer alone, even when
    hundreds are ready at once; the PONG says the broker accepts BATCH."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = _client(node, ctx)
    try:
        ids = {f"v1-{i}" for i in range(300)}
        for jid in sorted(ids):
            s.send_multipart(_job("echo", jid, {"i": jid}))
        singles, batches, got = _collect(s, ids)
        assert batches == 0
        assert singles >= len(ids)
        assert set(got.values()) == {MsgType.RESULT}
        s.send_multipart([b"OZ\x01", msgpack.packb([int(MsgType.PING), "p1", "raw", "", 8, 0,
                                                    2, None]), b""])
        assert s.poll(int(WAIT * 1000))
        pong = decode(s.recv_multipart())
        assert pong.header.type == MsgType.PONG and Ping.unpack(pong.body).batch
    finally:
        s.close(0)
        ctx.term()


def test_batching_client_gets_batches_under_load(node: LocalNode) -> None:
    """A client that sends BATCHes of JOBs gets every answer, mostly batched:
    the broker hands each worker its share as a BATCH, the worker answers the
    share in one, and the broker batches the answers back."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = _client(node, ctx)
    try:
        ids: set[str] = set()
        for b in range(10):
            msgs = [_job("echo", f"b{b}-{i}", {"i": i}) for i in range(MAX_BATCH_SEND)]
            ids |= {decode(m).header.id for m in msgs}
            s.send_multipart(encode_batch(msgs, 2))
        _singles, batches, got = _collect(s, ids)
        assert set(got.values()) == {MsgType.RESULT}
        assert batches > 0
        assert batches < len(ids) / 2  # most answers came several to a message
    finally:
        s.close(0)
        ctx.term()
    with node.client() as c:  # the reference client batches too, and is answered
        futs = [c.submit("echo", {"i": i}) for i in range(200)]
        assert [f.result(WAIT).value for f in futs] == [{"i": i} for i in range(200)]


def test_bad_batch_is_refused_and_the_broker_keeps_serving(node: LocalNode) -> None:
    """A BATCH that is not well formed is answered with ERROR protocol, none of
    its messages is run; a bad message inside a good BATCH is refused alone."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = _client(node, ctx)
    try:
        header = encode_batch([_job("echo", "x"), _job("echo", "y")], 2)[1]
        nested = encode_batch([_job("echo", "n1"), _job("echo", "n2")], 2)
        for body in (b"\xc1", msgpack.packb([["not bin", b""]]), msgpack.packb([]),
                     msgpack.packb([[nested[1], nested[2]]])):
            s.send_multipart([b"OZ\x01", header, body])
            assert s.poll(int(WAIT * 1000))
            err = decode(s.recv_multipart())
            assert err.header.type == MsgType.ERROR
            assert msgpack.unpackb(err.body)["code"] == "protocol"
        good = _job("echo", "good", {"ok": 1})
        s.send_multipart(encode_batch([[b"OZ\x01", b"\xc1", b""], good], 2))
        seen: list[int] = []
        deadline = time.monotonic() + WAIT
        while MsgType.RESULT not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and s.poll(int(left * 1000))
            frames = s.recv_multipart()
            for m in decode_batch(frames) if is_batch(frames) else [frames]:
                seen.append(decode(m).header.type)
        assert MsgType.ERROR in seen
    finally:
        s.close(0)
        ctx.term()
    with node.client() as c:
        assert c.run("echo", {"after": "bad"}) == {"after": "bad"}
        assert c.stats()["jobs_received"] >= 1


def test_worker_without_batch_in_ready_gets_only_singles(node: LocalNode) -> None:
    """A v1 worker (READY without ``batch``) is sent one JOB per message even
    when a client's BATCH brings many for it at once."""
    cfg = load_config(node.home)
    endpoint = resolve_worker_endpoint(node.home, cfg.node, cfg.broker.worker_endpoint)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    w = ctx.socket(zmq.DEALER)
    w.setsockopt(zmq.LINGER, 0)
    w.setsockopt(zmq.IDENTITY, b"n1.rawworker")
    if endpoint.startswith("tcp"):
        k = node.keys()
        w.curve_publickey, w.curve_secretkey, w.curve_serverkey = k.public, k.secret, k.server
    w.connect(endpoint)
    s = _client(node, ctx)

    def to_broker(t: MsgType, mid: str, body: bytes) -> None:
        w.send_multipart([b"OZ\x01", msgpack.packb([int(t), mid, "n1.rawworker", "", 1, 0, 0,
                                                    None]), body])

    beats = [0.0]

    def beat(running: int = 0) -> None:
        """HEARTBEAT often enough for the tests' short liveness (FAST_ENV)."""
        now = time.monotonic()
        if now - beats[0] > 0.1:
            to_broker(MsgType.HEARTBEAT, f"hb{now}", Heartbeat(running).pack())
            beats[0] = now

    try:
        to_broker(MsgType.READY, "r1", Ready("n1.rawworker", (ToolInfo("rawtool"),),
                                             slots=64).pack())
        with node.client() as c:
            deadline = time.monotonic() + WAIT
            while "rawtool" not in str(c.query("tools")):
                assert time.monotonic() < deadline, "the raw worker did not register"
                beat()
                while w.poll(0):
                    w.recv_multipart()  # the broker's HEARTBEATs
                time.sleep(0.05)
                beat()
        msgs = [_job("rawtool", f"w-{i}") for i in range(MAX_BATCH_SEND)]
        s.send_multipart(encode_batch(msgs, 2))
        jobs = 0
        deadline = time.monotonic() + WAIT
        while jobs < len(msgs):
            assert time.monotonic() < deadline, f"{jobs} of {len(msgs)} jobs reached the worker"
            beat(jobs)
            if not w.poll(50):
                continue
            frames = w.recv_multipart()
            assert not is_batch(frames), "a worker that did not offer batch got a BATCH"
            h = decode(frames).header
            if h.type == MsgType.JOB:
                jobs += 1
                w.send_multipart([b"OZ\x01", msgpack.packb(
                    [int(MsgType.RESULT), h.id, "n1.rawworker", "", 1, 0, h.cls, None]),
                    ResultBody(value="done", node="n1").pack()])
        _, _, got = _collect(s, {f"w-{i}" for i in range(MAX_BATCH_SEND)})
        assert set(got.values()) == {MsgType.RESULT}
    finally:
        s.close(0)
        w.close(0)
        ctx.term()

