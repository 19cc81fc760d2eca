"""A mesh of real broker processes on 127.0.0.1, CurveZMQ on every link."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LocalNode, MeshOfNodes, wait_for

from operone_zmq.errors import NoRoute

pytestmark = pytest.mark.integration

NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture
def line5(tmp_path: Path) -> Iterator[MeshOfNodes]:
    """a - b - c - d - e, each dialling the next; a worker on e and on a."""
    m = MeshOfNodes(tmp_path, NAMES)
    try:
        m.start(list(itertools.pairwise(NAMES)))
        m["e"].start_worker()
        m["a"].start_worker()
        m.wait_converged()
        yield m
    finally:
        m.stop()


def test_job_from_the_first_node_runs_on_the_last(line5: MeshOfNodes) -> None:
    """submit(..., on="e") from a client of a runs on e, four hops away."""
    with line5["a"].client() as c:
        res = c.submit("sysinfo", on="e").result(20)
        assert res.executed_on == "e"
        assert c.route("e")["path"] == NAMES
        values = c.map("echo", [{"i": i} for i in range(200)], on="e", concurrency=50)
        assert values == [{"i": i} for i in range(200)]
        with pytest.raises(NoRoute, match="unknown node"):
            c.run("echo", on="nowhere", timeout=5)
        stats = c.network_stats()
        assert stats["total_nodes"] == 5 and stats["network_diameter"] == 4
        assert stats["partitions"] == 1
    with line5["c"].client() as c:
        assert c.stats()["relayed"] > 0


def test_broadcast_reaches_every_node_once(line5: MeshOfNodes) -> None:
    """A broadcast from a client of c is delivered exactly once on all five."""
    with line5["c"].client() as c:
        assert c.broadcast({"type": "notification", "data": "hello"}) == 2
    for n in NAMES:
        with line5[n].client() as c:
            got = wait_for(lambda c=c: [b for b in c.query("broadcasts")
                                        if b["data"] == {"type": "notification",
                                                         "data": "hello"}],
                           10, f"the broadcast on {n}")
            time.sleep(0.2)
            got = [b for b in c.query("broadcasts") if b["data"]["data"] == "hello"]
            assert len(got) == 1, n


def test_ring_reroutes_when_a_broker_dies(tmp_path: Path) -> None:
    """Ring of 5: kill the first hop of a's route to c; the route moves the
    other way round and jobs still succeed."""
    m = MeshOfNodes(tmp_path, NAMES)
    try:
        m.start([(x, NAMES[(i + 1) % 5]) for i, x in enumerate(NAMES)])
        m["c"].start_worker()
        m.wait_converged()
        with m["a"].client() as c:
            # Costs are measured RTTs: a reaches c either way round the ring.
            path = c.route("c")["path"]
            assert path in (["a", "b", "c"], ["a", "e", "d", "c"])
            assert c.run("echo", {"x": 1}, on="c") == {"x": 1}
            victim = path[1]
            other = ["a", "e", "d", "c"] if victim == "b" else ["a", "b", "c"]
            m[victim].procs[0].p.send_signal(signal.SIGKILL)
            # 3 heartbeat intervals, plus flooding; generous for CI
            wait_for(lambda: {p["node"]: p["state"] for p in c.peers()}.get(victim) != "up", 10,
                     f"a to see {victim} gone")
            wait_for(lambda: c.route("c").get("path") == other, 10, "the route to move")
            assert c.run("echo", {"x": 2}, on="c", timeout=10) == {"x": 2}
    finally:
        m.stop()


def test_peer_claiming_another_nodes_id_is_refused(tmp_path: Path) -> None:
    """A broker that says it is 'a' but authenticates with another key gets
    no link; b logs and counts the refusal."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    mallory = LocalNode(tmp_path / "evil", "a")  # same node id, its own key
    try:
        m["b"].trust(mallory, name="mallory")  # trusted, but not as 'a'
        mallory.trust(m["b"])
        m.start([])
        mallory.start_broker("--peer", m["b"].address)
        with m["b"].client() as c:
            wait_for(lambda: c.stats()["peers_refused"] >= 1, 10, "the refusal")
            assert "a" not in c.stats()["peers"]
        with mallory.client() as c:
            wait_for(lambda: "not as node 'a'" in (c.peers()[0]["last_error"] or ""), 10,
                     "mallory to learn why")
    finally:
        mallory.stop()
        m.stop()


def test_connect_command_links_two_running_brokers(tmp_path: Path) -> None:
    """`operone connect` asks a running broker to dial another."""
    import subprocess
    import sys

    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        m.start([])
        out = subprocess.run(
            [sys.executable, "-P", "-m", "operone_zmq", "--home", str(m["a"].dir), "connect",
             m["b"].address], env=m["a"].env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "b: up" in out.stdout
        topo = subprocess.run(
            [sys.executable, "-P", "-m", "operone_zmq", "--home", str(m["a"].dir), "topology",
             "--format", "dot"], env=m["a"].env, capture_output=True, text=True, timeout=60)
        assert topo.returncode == 0, topo.stderr
        assert '"a" -- "b"' in topo.stdout or '"b" -- "a"' in topo.stdout
    finally:
        m.stop()


def test_tokens_are_required_and_checked_on_peer_links(tmp_path: Path) -> None:
    """With require_token, brokers sharing the cluster's jwt_secret link; one
    with another secret is refused with a token error.  The option concerns
    peers only (its comment says so): a client, which has no token, is served."""
    secret = "s" * 40
    m = MeshOfNodes(tmp_path, ["a", "b", "c"])
    for n in "ab":
        m[n].env["OPERONE_SECURITY_JWT_SECRET"] = secret
        m[n].env["OPERONE_SECURITY_REQUIRE_TOKEN"] = "true"
    m["c"].env["OPERONE_SECURITY_JWT_SECRET"] = "x" * 40
    try:
        m.start([("a", "b"), ("c", "b")])
        with m["a"].client() as c:
            assert c.ping()  # a client without a token is served
            wait_for(lambda: {p["node"]: p["state"] for p in c.peers()}.get("b") == "up", 20,
                     "a and b to link with tokens")
        with m["c"].client() as c:
            wait_for(lambda: "token refused" in (c.peers()[0]["last_error"] or ""), 20,
                     "c to be refused")
        with m["b"].client() as c:
            assert "c" not in c.stats()["peers"]
    finally:
        m.stop()
