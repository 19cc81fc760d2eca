"""BATCH between real broker processes (protocol v1 revision 7).

A chain a - b - c (a dials b, b dials c) with the worker on c: a client of a
keeps many jobs in flight for c, so each broker has several messages for a
neighbour per pass and sends them as BATCHes, which the neighbour unpacks
and relays message by message.  A broker configured below MIN_SIZE_TO_BATCH
offers no BATCH in its HELLO/WELCOME, and its neighbours send it singles.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import MeshOfNodes

from operone_zmq.protocol.batch import MIN_SIZE_TO_BATCH

pytestmark = pytest.mark.integration

#: Seconds the jobs of one test may take (a loaded machine).
WAIT = 60.0


def _chain(tmp_path: Path, **env: dict[str, str]) -> Iterator[MeshOfNodes]:
    """a - b - c, a worker on c; ``env``: extra environment per node."""
    m = MeshOfNodes(tmp_path, ["a", "b", "c"])
    try:
        for name, extra in env.items():
            m[name].env.update(extra)
        m.start([("a", "b"), ("b", "c")])
        m["c"].start_worker()
        m.wait_converged()
        yield m
    finally:
        m.stop()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[MeshOfNodes]:
    yield from _chain(tmp_path)


@pytest.fixture
def chain_b_small(tmp_path: Path) -> Iterator[MeshOfNodes]:
    """b's messages may be at most 32 KiB: below MIN_SIZE_TO_BATCH."""
    assert MIN_SIZE_TO_BATCH > 32 * 1024
    yield from _chain(tmp_path, b={"OPERONE_LIMITS_MAX_MESSAGE_SIZE": str(32 * 1024)})


def _run_jobs(m: MeshOfNodes) -> None:
    with m["a"].client() as c:
        values = c.map("echo", [{"i": i} for i in range(200)], on="c", concurrency=64)
        assert values == [{"i": i} for i in range(200)]


def _stats(m: MeshOfNodes, name: str) -> dict[str, Any]:
    with m[name].client() as c:
        stats: dict[str, Any] = c.stats()
    return stats


def test_jobs_cross_two_hops_in_batches(chain: MeshOfNodes) -> None:
    """200 jobs, 64 in flight, all answered right; the relay b (no client or
    worker of its own: every BATCH it counts is a neighbour's or for one)
    received BATCHes and sent them on."""
    _run_jobs(chain)
    b = _stats(chain, "b")
    assert b["relayed"] >= 400  # 200 JOBs on, 200 RESULTs back
    assert b["batches_received"] > 0 and b["batches_sent"] > 0
    assert b["malformed"] == 0
    for name in ("a", "c"):
        assert _stats(chain, name)["malformed"] == 0, name


def test_a_broker_below_the_batch_size_gets_and_sends_singles(
        chain_b_small: MeshOfNodes) -> None:
    """b does not offer BATCH: a and c send it singles (a BATCH frame past
    its 32 KiB limit would cost the connection), and it sends none; every
    job still succeeds."""
    _run_jobs(chain_b_small)
    b = _stats(chain_b_small, "b")
    assert b["relayed"] >= 400
    assert b["batches_received"] == 0 and b["batches_sent"] == 0
    assert b["malformed"] == 0
    for name in ("a", "c"):
        assert _stats(chain_b_small, name)["malformed"] == 0, name
