"""After a node restart, jobs sent while its workers re-register wait for them
(no ToolNotFound), with real processes (issue 9, medium)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import LocalNode, Proc, wait_for

pytestmark = pytest.mark.integration


def _node(n: LocalNode, tag: str) -> Proc:
    ready = n.dir / f"node-ready-{tag}.json"
    p = Proc(n._cli("node", "start", "--workers", "2", "--ready-file", str(ready)),
             n.env, n.dir / f"node-{tag}.log")
    n.procs.append(p)
    return p


@pytest.mark.skipif(sys.platform == "win32", reason="process signals")
def test_jobs_sent_during_a_node_restart_wait_for_its_workers(tmp_path: Path) -> None:
    n = LocalNode(tmp_path, "pc1")
    try:
        first = _node(n, "1")
        wait_for(lambda: (n.dir / "node-ready-1.json").exists() or not first.alive(), 30,
                 "the node to be ready")
        assert first.alive(), first.output()
        with n.client() as c:
            assert c.run("echo", {"v": 0}, timeout=10) == {"v": 0}
            first.stop()
            second = _node(n, "2")
            # Sent at once: they reach the new broker as soon as it binds,
            # before its workers (new processes) have registered.
            futs = [c.submit("echo", {"v": i}, timeout=20) for i in range(5)]
            assert [f.result(30).value for f in futs] == [{"v": i} for i in range(5)]
            assert c.stats()["jobs_waited_for_workers"] >= 1
        assert second.alive(), second.output()
    finally:
        n.stop()
