"""Dial incarnations (issue 15): a dialling broker's routing id is
NODE#EPOCH.SEQ, new for every dial; a neighbour that predates them (and
refuses such an id) is dialled again with the plain node id."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from helpers import free_base_port

from operone_zmq import Broker, CurveKeys
from operone_zmq.core.peers import node_of_rid
from operone_zmq.protocol import TAG, Header, MsgType, decode, encode_header
from operone_zmq.protocol.bodies import Bye, Hello, Welcome
from operone_zmq.security import TrustStore, generate_keypair

pytestmark = pytest.mark.integration


def _answer(rid: bytes, t: MsgType, corr: str, body: bytes) -> list[bytes]:
    h = Header(int(t), f"b.{corr}", "b", "a", 32, int(time.time() * 1000), 0, corr)
    return [rid, TAG, encode_header(h), body]


def test_incarnations_and_a_neighbour_that_predates_them(tmp_path: Path) -> None:
    """'b' is a bare CurveZMQ ROUTER that answers like a broker of the first
    revision: it refuses a routing id that is not exactly the HELLO's node.
    a's first HELLO comes from a#EPOCH.SEQ; after the refusal a dials again
    as plain 'a', and b's WELCOME brings the link up."""
    ka = generate_keypair(tmp_path / "a" / "keys", "node")
    kb = generate_keypair(tmp_path / "b" / "keys", "node")
    assert ka.secret is not None and kb.secret is not None
    trust = TrustStore(tmp_path / "a" / "trust")
    trust.accept("b", kb.public)
    port_b = free_base_port()

    async def go() -> None:
        ctx = zmq.asyncio.Context()
        old = ctx.socket(zmq.ROUTER)
        old.linger = 0
        old.curve_server = True
        old.curve_publickey, old.curve_secretkey = kb.public, kb.secret
        old.bind(f"tcp://127.0.0.1:{port_b}")
        # A first-revision neighbour does not sign: a signing broker refuses it
        # (revision 3, docs/protocol.md §11), so the fallback is a's with
        # signatures off.
        a = Broker("a", keys=CurveKeys(ka.public, ka.secret or b""), trust=trust,
                   base_port=free_base_port(), worker_endpoint=f"ipc://{tmp_path}/a.ipc",
                   signatures=False)
        rids: list[bytes] = []
        try:
            async with a:
                link = asyncio.ensure_future(a.connect_to_peer("127.0.0.1", port_b,
                                                               node_id="b", timeout=15))
                while True:
                    frames = await asyncio.wait_for(old.recv_multipart(), 10)
                    rid, msg = frames[0], decode(frames, 1)
                    assert msg.header.type == MsgType.HELLO
                    node = Hello.unpack(msg.body).node
                    rids.append(rid)
                    if rid != node.encode():
                        reason = (f"HELLO claims to be '{node}' on a connection whose"
                                  f" routing id is '{rid.decode()}'")
                        await old.send_multipart(_answer(rid, MsgType.BYE, msg.header.id,
                                                         Bye(reason, "refused").pack()))
                        continue
                    await old.send_multipart(_answer(rid, MsgType.WELCOME, msg.header.id,
                                                     Welcome("b", "b").pack()))
                    break
                # (connect_to_peer also waits for b's LSA, which this b never sends.)
                end = time.monotonic() + 10
                while not (a.core.links.get("b") is not None and a.core.links["b"].up):
                    assert time.monotonic() < end, "a's link to b never came up"
                    await asyncio.sleep(0.02)
                link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link
        finally:
            old.close(0)
            ctx.term()
        first = rids[0]
        assert node_of_rid(first) == b"a" and first.startswith(b"a#")
        epoch, _, seq = first[2:].partition(b".")
        assert len(epoch) == 16 and int(epoch, 16) >= 0 and int(seq, 16) >= 1
        assert rids[-1] == b"a"

    asyncio.run(go())
