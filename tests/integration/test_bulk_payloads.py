"""Big payloads travel whole: bodies past the pump's zero-copy size (issue 12).

A body of at least ZERO_COPY_RECV bytes reaches the broker's core as a view
of its zmq.Frame and is sent on by reference, to the worker and back to the
client, and through a neighbour broker (a signed relay hop): what comes back
must be exactly what was sent, at the sizes around the threshold too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LocalNode, MeshOfNodes, wait_for

from operone_zmq.aio.pump import ZERO_COPY_RECV

pytestmark = pytest.mark.integration

SIZES = [ZERO_COPY_RECV - 64, ZERO_COPY_RECV, 64 * 1024, 1 << 20]


def _payloads() -> list[bytes]:
    return [os.urandom(n) for n in SIZES]


def test_big_payloads_round_trip_through_broker_and_worker(node: LocalNode) -> None:
    with node.client() as c:
        for data in _payloads():
            r = c.run("echo", {"data": data, "n": len(data)}, timeout=30)
            assert r == {"data": data, "n": len(data)}
        # Many in flight at once: sends that wait in the pump's queues.
        sent = [os.urandom(64 * 1024 + i) for i in range(48)]
        futs = [c.submit("echo", {"data": d}, timeout=30) for d in sent]
        assert [f.result(30).value["data"] for f in futs] == sent


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[MeshOfNodes]:
    """a (no workers) linked to b, which has the only worker."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        m.start([("a", "b")])
        m["b"].start_worker()
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: c.placement("echo")["candidates"] == ["b"], 20,
                     "a to learn the tools of b")
        yield m
    finally:
        m.stop()


def test_big_payloads_round_trip_through_a_signed_relay_hop(pair: MeshOfNodes) -> None:
    with pair["a"].client() as c:
        for data in _payloads():
            assert c.run("echo", {"data": data}, timeout=30) == {"data": data}
        sent = [os.urandom(64 * 1024 + i) for i in range(16)]
        futs = [c.submit("echo", {"data": d}, timeout=30) for d in sent]
        assert [f.result(30).value["data"] for f in futs] == sent
