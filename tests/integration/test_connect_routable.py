"""Issue 9 item 6: a job sent right after ``await connect_to_peer()`` can use the link.

Before the fix ``connect_to_peer`` resolved when the link's handshake was
done, before both ends' LSAs were in and routes computed, so a job sent at
once failed with "NoRoute ... known but unreachable" in about 5 of 6 runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from helpers import free_base_port

from operone_zmq import AsyncClient, Broker, CurveKeys, NoRoute, tool
from operone_zmq.core.broker import BrokerLimits
from operone_zmq.errors import ConfigError
from operone_zmq.security import TrustStore, generate_keypair

pytestmark = pytest.mark.integration

#: Fresh broker pairs linked and used at once.
ROUNDS = 20


@tool(inline=True)
def where(x: int) -> int:
    """Return ``x`` (the job's executed_on tells where it ran)."""
    return x


def _keys(tmp_path: Path) -> tuple[TrustStore, Callable[..., CurveKeys]]:
    """Keys of brokers a and b and of a client, all trusted; ``curve(name,
    server)``: the Curve keys of ``name`` (dialling ``server``, if given)."""
    keys = {n: generate_keypair(tmp_path / "keys", n) for n in ("a", "b", "client")}
    trust = TrustStore(tmp_path / "trust")
    for name, kp in keys.items():
        trust.accept(name, kp.public)

    def curve(name: str, server: str | None = None) -> CurveKeys:
        kp = keys[name]
        assert kp.secret is not None
        return CurveKeys(kp.public, kp.secret, keys[server].public if server else None)
    return trust, curve


def _pair(tmp_path: Path, trust: TrustStore, curve: Callable[..., CurveKeys],
          tag: str = "") -> tuple[Broker, Broker, int, int]:
    """Brokers a and b (not started) on free ports; b serves ``where``."""
    pa, pb = free_base_port(), free_base_port()
    a = Broker("a", keys=curve("a"), trust=trust, base_port=pa,
               worker_endpoint=f"ipc://{tmp_path}/a{tag}.ipc")
    b = Broker("b", keys=curve("b"), trust=trust, base_port=pb,
               worker_endpoint=f"ipc://{tmp_path}/b{tag}.ipc")
    b.register_tool(where)
    return a, b, pa, pb


def test_job_right_after_connect_to_peer_succeeds(tmp_path: Path) -> None:
    """20 of 20 fresh pairs: connect_to_peer, then a job on the peer at once."""
    trust, curve = _keys(tmp_path)

    async def one_round(i: int) -> str:
        a, b, pa, pb = _pair(tmp_path, trust, curve, str(i))
        async with a, b, AsyncClient("127.0.0.1", pa, keys=curve("client", "a")) as c:
            await a.connect_to_peer("127.0.0.1", pb, node_id="b", timeout=10.0)
            res = await c.submit("where", {"x": i}, on="b", timeout=10.0)
            assert res.value == i
            return str(res.executed_on)

    async def go() -> list[str]:
        return [await asyncio.wait_for(one_round(i), 30.0) for i in range(ROUNDS)]

    assert asyncio.run(go()) == ["b"] * ROUNDS


def test_wait_routable_times_out_with_no_route(tmp_path: Path) -> None:
    """wait_routable on a node nobody links to raises NoRoute after its timeout."""
    kp = generate_keypair(tmp_path / "keys", "a")
    assert kp.secret is not None
    trust = TrustStore(tmp_path / "trust")
    trust.accept("a", kp.public)

    async def go() -> None:
        a = Broker("a", keys=CurveKeys(kp.public, kp.secret), trust=trust,
                   base_port=free_base_port(), worker_endpoint=f"ipc://{tmp_path}/a.ipc")
        async with a:
            with pytest.raises(NoRoute, match="not routable"):
                await a.wait_routable("nobody", timeout=0.3)

    asyncio.run(go())


def test_an_address_that_cannot_be_dialled_is_refused_and_leaves_the_link(
        tmp_path: Path) -> None:
    """QUERY connect and connect_to_peer with a host or port no broker can
    have: an error reply (a ConfigError), no socket left behind, and the link
    that was up stays up.  (Before: libzmq's EINVAL escaped the dial after
    the old link's sockets were closed and half the new ones opened; QUERY
    connect answered "dialling" and the broker logged a traceback.)"""
    trust, curve = _keys(tmp_path)

    bad = [("a b", 7000), ("-x-", 7000), ("é.example", 7000), ("h" * 300, 7000),
           ("127.0.0.1", -5), ("127.0.0.1", 0), ("127.0.0.1", 65533), ("127.0.0.1", 10**30),
           ("", 7000)]

    async def go() -> None:
        a, b, pa, pb = _pair(tmp_path, trust, curve)
        async with a, b, AsyncClient("127.0.0.1", pa, keys=curve("client", "a")) as c:
            await a.connect_to_peer("127.0.0.1", pb, node_id="b", timeout=10.0)
            pump = a._pump
            assert pump is not None
            open_before = sum(s is not None for s in pump.sockets)
            for host, port in bad:
                answer = await c.connect_peer("b", host, port)
                assert set(answer) == {"error"}, (host, port, answer)
                assert "connect: " in answer["error"]
                with pytest.raises(ConfigError, match="cannot dial 'b'"):
                    await a.connect_to_peer(host, port, node_id="b", timeout=1.0)
            too_long = await c.connect_peer("n" * 65, "127.0.0.1", pb)
            assert "node must be a node id" in too_long["error"]
            await asyncio.sleep(0.2)
            assert sum(s is not None for s in pump.sockets) == open_before
            assert a.get_connected_peers()[0]["node"] == "b"
            res = await c.submit("where", {"x": 7}, on="b", timeout=10.0)
            assert res.value == 7

    asyncio.run(asyncio.wait_for(go(), 60.0))


def test_a_broker_dials_at_most_max_peers_neighbours(tmp_path: Path) -> None:
    """mesh.max_peers bounds the links a broker dials, as it bounds those it
    accepts: past it a dial is a ConfigError and opens nothing (each dialled
    link holds 8 sockets; the descriptor budget is sized by max_peers).
    Re-dialling a neighbour already dialled is not a new one."""
    trust, curve = _keys(tmp_path)
    fakes = {f"n{i}": zmq.curve_keypair()[0] for i in range(3)}
    for node, pub in fakes.items():
        trust.accept(node, pub)

    async def go() -> None:
        a = Broker("a", keys=curve("a"), trust=trust, base_port=free_base_port(),
                   limits=BrokerLimits(max_peers=2), worker_endpoint=f"ipc://{tmp_path}/a.ipc")
        async with a:
            pump = a._pump
            assert pump is not None
            for node in ("n0", "n1", "n1"):  # nothing listens: each times out
                with pytest.raises(NoRoute):
                    await a.connect_to_peer("127.0.0.1", free_base_port(), node_id=node,
                                            public_key=fakes[node], timeout=0.05)
            open_before = sum(s is not None for s in pump.sockets)
            with pytest.raises(ConfigError, match=r"already dials 2 neighbours \(mesh.max_peers"):
                await a.connect_to_peer("127.0.0.1", free_base_port(), node_id="n2",
                                        public_key=fakes["n2"], timeout=0.05)
            assert sum(s is not None for s in pump.sockets) == open_before
            assert await a.disconnect_peer("n0")
            with pytest.raises(NoRoute):  # room again
                await a.connect_to_peer("127.0.0.1", free_base_port(), node_id="n2",
                                        public_key=fakes["n2"], timeout=0.05)

    asyncio.run(asyncio.wait_for(go(), 30.0))
