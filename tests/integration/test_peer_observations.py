"""What a running broker reports about its neighbours: ``topology.get_peer(n).last_seen``
and ``get_qos_metrics(n)`` bandwidth (issue 9: both read 0 on a live link)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import free_base_port

from operone_zmq import Broker, CurveKeys, Worker
from operone_zmq.security import TrustStore, generate_keypair
from operone_zmq.tools.registry import ToolRegistry

pytestmark = pytest.mark.integration


async def _pair(tmp_path: Path) -> tuple[Broker, Broker, int]:
    keys = {}
    for n in ("a", "b"):
        kp = generate_keypair(tmp_path / n / "keys", "node")
        assert kp.secret is not None
        keys[n] = kp
    brokers = []
    ports = {}
    for n in ("a", "b"):
        trust = TrustStore(tmp_path / n / "trust")
        for other, kp in keys.items():
            trust.accept(other, kp.public)
        ports[n] = free_base_port()
        secret = keys[n].secret
        assert secret is not None
        brokers.append(Broker(n, keys=CurveKeys(keys[n].public, secret), trust=trust,
                              base_port=ports[n], worker_endpoint=f"ipc://{tmp_path}/{n}.ipc"))
    return brokers[0], brokers[1], ports["b"]


def _shout(text: str) -> str:
    return text.upper()


async def _until(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_last_seen_of_a_neighbour_is_set_and_advances(tmp_path: Path) -> None:
    """LSAs that the broker installs itself (not through NetworkTopology) set last_seen."""

    async def go() -> None:
        a, b, port_b = await _pair(tmp_path)
        async with a, b:
            await a.connect_to_peer("127.0.0.1", port_b, node_id="b", timeout=10)

            def seen() -> float:
                p = a.topology.get_peer("b")
                return 0.0 if p is None else p.last_seen

            await _until(lambda: seen() > 0, 10, "a to install b's LSA")
            first = seen()
            assert time.monotonic() - first < 10
            # A worker registers with b: b's newer LSA (new tools) moves last_seen forward.
            w = Worker("b.w1", f"ipc://{tmp_path}/b.ipc", ToolRegistry([_shout]))
            await w.start()
            try:
                await _until(lambda: seen() > first, 10, "a newer LSA of b")
                p = a.topology.get_peer("b")
                assert p is not None and "_shout" in p.tools
            finally:
                await w.stop()

    asyncio.run(go())


def test_a_slow_link_does_not_read_zero_bandwidth(tmp_path: Path) -> None:
    """Heartbeats alone are a few hundred B/s: bandwidth_mb_s must not round to 0."""

    async def go() -> None:
        a, b, port_b = await _pair(tmp_path)
        async with a, b:
            await a.connect_to_peer("127.0.0.1", port_b, node_id="b", timeout=10)
            await asyncio.sleep(2.5)
            m = a.get_qos_metrics("b")
            assert m is not None
            assert 0 < m["bandwidth_bytes_s"] < 100_000
            assert m["bandwidth_mb_s"] > 0

    asyncio.run(go())
