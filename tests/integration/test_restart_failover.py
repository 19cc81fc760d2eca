"""A target broker SIGKILLed and restarted at once is noticed (issue 15, Failover).

Real brokers and a real worker on loopback: a dials b; b's worker is a separate
process (``operone worker start``), so it survives its broker and registers
again with the new one.  Jobs pinned on b run when b is killed and started
again on the same ports at once.  Before incarnations, a saw only
``peer:disconnected`` / ``peer:connected`` and every job waited out its
deadline (30 s here); now a sees b's new incarnation, fails the old attempts
and re-places them, and the retries join the jobs the worker still runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MeshOfNodes, wait_for

from operone_zmq.errors import BrokerRestarted, JobError

pytestmark = pytest.mark.integration

TOOLS = str(Path(__file__).resolve().parents[1] / "chaos_tools.py")
JOBS = 40
TIMEOUT = 30.0


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[MeshOfNodes, Path]]:
    side = tmp_path / "side-effects.txt"
    m = MeshOfNodes(tmp_path, ["a", "b"])
    for node in m.nodes.values():
        node.env["OPERONE_TEST_SIDE_EFFECTS"] = str(side)
    try:
        m.start([("a", "b")])
        m["b"].start_worker(None, "--tools", TOOLS)
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: c.placement("chaos.record")["candidates"] == ["b"], 20,
                     "a to learn b's tools")
        yield m, side
    finally:
        m.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_target_broker_killed_and_restarted_at_once_no_job_waits_its_deadline(
        pair: tuple[MeshOfNodes, Path]) -> None:
    m, side = pair
    b = m["b"]
    with m["a"].client() as c:
        futs = [c.submit("chaos.record", {"key": f"r{i}", "seconds": 2.0, "once": False},
                         on="b", retries=3, timeout=TIMEOUT) for i in range(JOBS)]
        wait_for(lambda: side.exists() and len(side.read_text().split()) >= JOBS, 20,
                 "every job to start on b")
        broker = b.procs[0]
        os.kill(broker.pid, signal.SIGKILL)
        broker.p.wait(5)
        broker.stop()  # reaped; closes its log
        t0 = time.monotonic()
        b.procs.remove(broker)
        b.start_broker()
        outcomes: list[object] = []
        for f in futs:
            try:
                outcomes.append(f.result(TIMEOUT + 10))
            except JobError as exc:
                outcomes.append(exc)
        took = time.monotonic() - t0
        print(f"target restart: {JOBS} jobs ended {took:.2f} s after the kill")
    errors = [o for o in outcomes if isinstance(o, JobError)]
    assert not errors, errors[:3]
    assert took < TIMEOUT / 2, took  # none waited out its deadline
    runs = Counter(side.read_text().split())
    assert len(runs) == JOBS and max(runs.values()) == 1, runs.most_common(3)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_origin_broker_killed_and_restarted_idempotent_jobs_resubmitted(
        tmp_path: Path) -> None:
    """The client's own broker is SIGKILLed and restarted at once while its
    jobs run on a worker that survives it: the client sees the new
    incarnation in a PONG, submits the idempotent jobs again (they join the
    jobs the worker still runs: none runs twice) and fails the one that is
    not idempotent at once with BrokerRestarted, instead of JobTimeout at its
    deadline."""
    side = tmp_path / "side-effects.txt"
    m = MeshOfNodes(tmp_path, ["a"])
    a = m["a"]
    a.env["OPERONE_TEST_SIDE_EFFECTS"] = str(side)
    try:
        m.start([])
        a.start_worker(None, "--tools", TOOLS)
        a.wait_workers(1)
        with a.client() as c:
            futs = [c.submit("chaos.record", {"key": f"o{i}", "seconds": 3.0, "once": False},
                             retries=1, timeout=TIMEOUT) for i in range(6)]
            lone = c.submit("chaos.record", {"key": "lone", "seconds": 3.0, "once": False},
                            timeout=TIMEOUT, idempotent=False)
            wait_for(lambda: side.exists() and len(side.read_text().split()) >= 7, 20,
                     "the jobs to start")
            broker = a.procs[0]
            os.kill(broker.pid, signal.SIGKILL)
            broker.p.wait(5)
            broker.stop()
            a.procs.remove(broker)
            t0 = time.monotonic()
            a.start_broker()
            with pytest.raises(BrokerRestarted):
                lone.result(TIMEOUT)
            lone_took = time.monotonic() - t0
            results = [f.result(TIMEOUT) for f in futs]
            took = time.monotonic() - t0
        print(f"origin restart: non-idempotent failed after {lone_took:.2f} s,"
              f" {len(results)} idempotent ended {took:.2f} s after the restart")
    finally:
        m.stop()
    assert lone_took < TIMEOUT / 2 and took < TIMEOUT / 2
    assert sorted(r.value for r in results) == sorted(f"o{i}" for i in range(6))
    runs = Counter(side.read_text().split())
    assert max(runs.values()) == 1, runs.most_common(3)
