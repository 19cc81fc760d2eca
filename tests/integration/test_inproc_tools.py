"""Tools served inside the broker's process (Broker.register_tool)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import free_base_port

from operone_zmq import AsyncClient, Broker, CurveKeys, JobTimeout, ToolFailed, tool
from operone_zmq.security import TrustStore, generate_keypair

pytestmark = pytest.mark.integration


@tool(inline=True)
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def wait_a_bit(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "waited"


def blocking_boom() -> None:
    raise ValueError("boom")


def test_register_tool_serves_jobs_in_the_broker(tmp_path: Path) -> None:
    """Inline, async and blocking tools run in the broker; errors and
    timeouts are typed as for workers."""
    kp = generate_keypair(tmp_path / "keys", "node")
    assert kp.secret is not None
    trust = TrustStore(tmp_path / "trust")
    trust.accept("self", kp.public)
    port = free_base_port()

    async def go() -> None:
        b = Broker("solo", keys=CurveKeys(kp.public, kp.secret), trust=trust, base_port=port,
                   worker_endpoint=f"ipc://{tmp_path}/w.ipc")
        b.register_tool(add)
        b.register_tool(wait_a_bit)
        b.register_tool(blocking_boom)
        async with b, AsyncClient("127.0.0.1", port,
                                  keys=CurveKeys(kp.public, kp.secret, kp.public)) as c:
            res = await c.submit("add", {"a": 2, "b": 3})
            assert res.value == 5 and res.executed_on == "solo"
            assert await c.run("wait_a_bit", {"seconds": 0.05}) == "waited"
            with pytest.raises(ToolFailed, match="boom"):
                await c.run("blocking_boom")
            with pytest.raises(JobTimeout):
                await c.run("wait_a_bit", {"seconds": 5}, timeout=0.2)
            values = await c.map("add", [{"a": i, "b": i} for i in range(500)])
            assert values == [2 * i for i in range(500)]
            assert (await c.stats())["workers"] == 1

    asyncio.run(go())
