"""Placement, spreading and failover across real brokers and workers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MeshOfNodes, wait_for

from operone_zmq import DistributedExecutor
from operone_zmq.aio.client import AsyncClient
from operone_zmq.errors import NotIdempotent, ToolNotFound

pytestmark = pytest.mark.integration

TOOLS = str(Path(__file__).resolve().parents[1] / "chaos_tools.py")


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[MeshOfNodes]:
    """Origin a (no workers) linked to b and c; b-c linked; c's worker has gpu."""
    side = tmp_path / "side-effects.txt"
    m = MeshOfNodes(tmp_path, ["a", "b", "c"])
    for node in m.nodes.values():
        node.env["OPERONE_TEST_SIDE_EFFECTS"] = str(side)
    try:
        m.start([("a", "b"), ("a", "c"), ("b", "c")])
        m["b"].start_worker(None, "--tools", TOOLS)
        m["c"].start_worker(None, "--tools", TOOLS, "--cap", "gpu")
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: c.placement("chaos.node")["candidates"] == ["b", "c"], 20,
                     "a to learn the tools of b and c")
        yield m
    finally:
        m.stop()


def test_capability_jobs_run_only_on_the_node_that_has_it(trio: MeshOfNodes) -> None:
    """Jobs requiring gpu run only on c; an unknown capability fails fast."""
    with trio["a"].client() as c:
        futs = [c.submit("chaos.node", capabilities=["gpu"]) for _ in range(20)]
        assert {f.result(20).value for f in futs} == {"c"}
        t0 = time.monotonic()
        with pytest.raises(ToolNotFound, match="tpu"):
            c.run("chaos.node", capabilities=["tpu"])
        with pytest.raises(ToolNotFound, match=r"nobody\.has"):
            c.run("nobody.has")
        assert time.monotonic() - t0 < 5  # fails fast, not at a timeout


def test_jobs_are_spread_over_nodes(trio: MeshOfNodes) -> None:
    """300 short jobs from a with workers on a, b and c: no node gets more
    than half of them."""
    trio["a"].start_worker(None, "--tools", TOOLS)
    with trio["a"].client() as c:
        wait_for(lambda: c.placement("chaos.node")["candidates"] == ["a", "b", "c"], 20,
                 "a's own worker")
        res = c.map("chaos.record", [{"key": f"s{i}", "seconds": 0.05} for i in range(300)],
                    concurrency=300)
        assert len(res) == 300
        stats = {n: trio[n].client() for n in "abc"}
        try:
            done = {n: sum(w["done"] for w in cl.workers()) for n, cl in stats.items()}
        finally:
            for cl in stats.values():
                cl.close()
    assert sum(done.values()) >= 300
    assert max(done.values()) <= 150, done


def _running_on(m: MeshOfNodes) -> str:
    for n in ("b", "c"):
        with m[n].client() as c:
            if c.stats()["running"]:
                return n
    return ""


def test_worker_killed_mid_job_completes_elsewhere(trio: MeshOfNodes) -> None:
    """SIGKILL of the worker running a job: it completes on the other node."""
    with trio["a"].client() as c:
        fut = c.submit("chaos.record", {"key": "w1", "seconds": 3.0}, retries=2, timeout=30)
        first = wait_for(lambda: _running_on(trio), 10, "the job to start")
        worker = next(p for p in trio[first].procs[1:] if p.alive())
        os.kill(worker.pid, signal.SIGKILL)
        res = fut.result(30)
        assert res.executed_on == ({"b", "c"} - {first}).pop()
        assert res.attempts == 2


def test_broker_killed_mid_job_completes_elsewhere(trio: MeshOfNodes) -> None:
    """SIGKILL of the whole target broker: the job completes on the other."""
    with trio["a"].client() as c:
        fut = c.submit("chaos.record", {"key": "k1", "seconds": 3.0}, retries=2, timeout=30)
        first = wait_for(lambda: _running_on(trio), 10, "the job to start")
        t0 = time.monotonic()
        for p in trio[first].procs:
            os.kill(p.pid, signal.SIGKILL)
        res = fut.result(30)
        assert res.executed_on == ({"b", "c"} - {first}).pop()
        print(f"failover after broker kill: {time.monotonic() - t0:.2f} s")


def test_non_idempotent_job_on_a_dead_node_is_an_explicit_error(
        trio: MeshOfNodes, tmp_path: Path) -> None:
    """A non-idempotent job whose node died is not run again: NotIdempotent."""
    with trio["a"].client() as c:
        fut = c.submit("chaos.record", {"key": "once", "seconds": 3.0, "once": False},
                       retries=2, idempotent=False, timeout=30)
        first = wait_for(lambda: _running_on(trio), 10, "the job to start")
        # Its worker has the job once the broker counts it running, but the
        # tool may not have written its side effect yet (CI: killed before).
        effects = tmp_path / "side-effects.txt"
        wait_for(lambda: effects.exists() and "once" in effects.read_text().split(), 10,
                 "the tool to record its side effect")
        worker = next(p for p in trio[first].procs[1:] if p.alive())
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(NotIdempotent, match="not idempotent"):
            fut.result(30)
    assert effects.read_text().split().count("once") == 1


def test_distributed_executor(trio: MeshOfNodes) -> None:
    """The original's DistributedExecutor API: capabilities, per-entry
    parameters in execute_parallel, real statistics."""
    node = trio["a"]

    async def go() -> None:
        async with AsyncClient("127.0.0.1", node.base_port, keys=node.keys()) as c:
            ex = DistributedExecutor(c)
            r = await ex.execute("chaos.node", {}, None, {"required_capabilities": ["gpu"]})
            assert r.success and r.executed_on == "c" and r.result == "c"
            rs = await ex.execute_parallel(
                [{"tool_name": "chaos.record", "params": {"key": f"p{i}"}} for i in range(10)])
            assert [x.result for x in rs] == [f"p{i}" for i in range(10)]
            bad = await ex.execute("nope", {})
            assert not bad.success and isinstance(bad.error, ToolNotFound)
            s = ex.get_stats()
            assert s["remote"] == 11 and s["failed"] == 1 and s["local"] == 0
            assert s["total"] == 12

    asyncio.run(go())


def test_shell_output_is_streamed_while_it_runs(trio: MeshOfNodes) -> None:
    """A shell job submitted with on_progress streams its stdout before the
    result arrives."""
    import threading

    trio["b"].stop()  # only need one node with a worker: start a fresh one on a
    node = trio["a"]
    node.env["OPERONE_TOOLS_SHELL_ALLOW"] = "sh"
    node.env["OPERONE_TOOLS_SHELL_ALLOW_UNSAFE"] = "true"  # sh runs anything: knowingly
    node.start_worker()
    got: list[str] = []
    first = threading.Event()

    def on_progress(p: object) -> None:
        data = getattr(p, "data", None)
        if data:
            got.append(data)
            first.set()

    with node.client() as c:
        wait_for(lambda: c.placement("shell")["node"] == "a", 20, "a's worker")
        fut = c.submit("shell", {"argv": ["sh", "-c", "echo one; sleep 1; echo two"]},
                       on="a", on_progress=on_progress)
        assert first.wait(10)
        assert not fut.done()  # the first line came while the command still ran
        res = fut.result(20)
    assert res.value["stdout"] == "one\ntwo\n"
    assert "".join(got) == "one\ntwo\n"
