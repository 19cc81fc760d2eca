"""QoS enforced on real peer links: a throttled, resumable file transfer."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MeshOfNodes, wait_for

from operone_zmq.aio.client import Client
from operone_zmq.errors import Overloaded

pytestmark = pytest.mark.integration

MB = 1_000_000


@pytest.fixture
def ab(tmp_path: Path) -> Iterator[MeshOfNodes]:
    """a dials b; b has a worker with an fs root."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    root = tmp_path / "b-files"
    root.mkdir()
    m["b"].env["OPERONE_TOOLS_FS_ROOT"] = str(root)
    # The flooding test queues 10,500 jobs from one client: past the per-client
    # budget (limits.max_client_jobs), so that budget is raised to reach the
    # link's own class queue bound.
    m["a"].env["OPERONE_LIMITS_MAX_CLIENT_JOBS"] = "20000"
    try:
        m.start([("a", "b")])
        m["b"].start_worker()
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: "fs.stat" in c.placement("fs.stat")["candidates"] or
                     c.placement("fs.stat")["node"] == "b", 20, "b's tools")
        yield m
    finally:
        m.stop()


def _copy(c: Client, src: Path, dest: str) -> object:
    return c.copy_file(str(src), "b", dest)


def test_file_transfer_holds_the_policy_rate_and_checksums(ab: MeshOfNodes,
                                                           tmp_path: Path) -> None:
    """20 MB on the low class cross the a-b link at 5 MB/s within 10%, and the
    copy under b's root is byte for byte the source; heartbeats keep flowing."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * MB))
    with ab["a"].client() as c:
        r = _copy(c, src, "in/big.bin")
        rate = r.size / r.seconds / MB  # type: ignore[attr-defined]
        assert 4.5 <= rate <= 5.5, f"{rate:.2f} MB/s"
        q = c.qos("b")
        assert q["packet_loss"] == 0 and q["health_score"] >= 90
        assert {p["node"]: p["state"] for p in c.peers()}["b"] == "up"
    dest = ab["b"].env["OPERONE_TOOLS_FS_ROOT"]
    assert hashlib.sha256(Path(dest, "in/big.bin").read_bytes()).hexdigest() == \
        hashlib.sha256(src.read_bytes()).hexdigest()


def test_transfer_resumes_after_the_link_is_killed(ab: MeshOfNodes, tmp_path: Path) -> None:
    """Kill b's broker in the middle of a copy and start it again: the copy
    resumes where b's file ends and the checksum matches."""
    src = tmp_path / "resume.bin"
    src.write_bytes(os.urandom(12 * MB))
    out: dict[str, object] = {}

    def run() -> None:
        with ab["a"].client(default_timeout=10) as c:
            try:
                out["r"] = _copy(c, src, "resume.bin")
            except Exception as exc:
                out["e"] = exc

    t = threading.Thread(target=run)
    t.start()
    dest = Path(ab["b"].env["OPERONE_TOOLS_FS_ROOT"], "resume.bin")
    wait_for(lambda: dest.exists() and dest.stat().st_size > 3 * MB, 20, "part of the copy")
    broker = ab["b"].procs[0]
    broker.signal(signal.SIGKILL)
    broker.stop()
    ab["b"].procs.remove(broker)
    time.sleep(0.5)
    ab["b"].start_broker()
    t.join(120)
    assert "e" not in out, out.get("e")
    r = out["r"]
    assert r.attempts > 1  # type: ignore[attr-defined]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == \
        hashlib.sha256(src.read_bytes()).hexdigest()


def test_flooding_a_shaped_link_gets_refusals(ab: MeshOfNodes) -> None:
    """With the link's budget tiny, a flood past the bounded queue is refused
    with Overloaded instead of growing memory."""
    with ab["a"].client() as c:
        c.query("qos", {"peer": "b", "allocate": 0.001})
        futs = [c.submit("echo", {"x": "y" * 100}, on="b", timeout=3) for _ in range(10_500)]
        refused = 0
        for f in futs[-600:]:
            try:
                f.result(30)
            except Overloaded:
                refused += 1
            except Exception:
                pass
        assert refused > 0
        assert c.stats()["qos_refused"] >= refused
        c.query("qos", {"peer": "b", "allocate": 0})
