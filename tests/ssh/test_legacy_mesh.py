"""A legacy host (real sshd) in the mesh: jobs from another broker run on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import MeshOfNodes, wait_for

from operone_zmq.errors import BadRequest, ToolNotFound

pytestmark = [pytest.mark.ssh, pytest.mark.integration]


def test_job_from_another_broker_runs_on_the_legacy_host(
        sshd: Any, known_hosts: Path, tmp_path: Path) -> None:
    """b serves legacy-1 over SSH; a client of a runs shell and fs.* on it."""
    m = MeshOfNodes(tmp_path, ["a", "b"])
    b = m["b"]
    b.env["OPERONE_SSH_HOSTS"] = f"legacy-1={sshd.user}@{sshd.host}:{sshd.port}"
    b.env["OPERONE_SSH_KEY_FILE"] = str(sshd.key_path)
    b.env["OPERONE_SSH_KNOWN_HOSTS"] = str(known_hosts)
    try:
        m.start([("a", "b")])
        with m["a"].client() as c:
            wait_for(lambda: any(n["id"] == "legacy-1" and n["reachable"]
                                 for n in c.topology()["nodes"]), 20,
                     "a to learn about legacy-1")
            node = next(n for n in c.topology()["nodes"] if n["id"] == "legacy-1")
            assert node["kind"] == "ssh" and "shell" in node["tools"]
            assert c.route("legacy-1")["path"] == ["a", "b", "legacy-1"]
            res = c.submit("shell", {"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]},
                           on="legacy-1").result(30)
            assert res.executed_on == "legacy-1"
            assert res.value == {"stdout": "out\n", "stderr": "err\n", "exit_code": 3,
                                 "truncated": False}
            path = f"{sshd.remote_dir}/hello.txt"
            assert c.run("fs.write", {"path": path, "data": "from the mesh"},
                         on="legacy-1")["bytes"] == 13
            assert c.run("fs.read", {"path": path}, on="legacy-1") == "from the mesh"
            with pytest.raises(ToolNotFound, match="offers only"):
                c.run("sysinfo", on="legacy-1")
            with pytest.raises(BadRequest, match="list of strings"):
                c.run("shell", {"argv": "uname -a"}, on="legacy-1")
            # a plain "shell" job without a target never lands on a legacy host
            assert c.placement("shell")["node"] != "legacy-1"
            futs = [c.submit("shell", {"argv": ["sleep", "0.2"]}, on="legacy-1")
                    for _ in range(8)]
            assert all(f.result(30).value["exit_code"] == 0 for f in futs)
            # The JOBs crossed b for a host b serves, and b answered in
            # legacy-1's name: both ways with pairwise MACs (b signs for it).
            assert c.stats()["pairwise_macs"] >= 8
        with b.client() as cb:
            assert cb.stats()["pairwise_macs"] >= 8
            assert cb.stats()["signatures_refused"] == 0
    finally:
        m.stop()


def test_operone_ssh_one_off_command(sshd: Any, known_hosts: Path, tmp_path: Path) -> None:
    """`operone ssh USER@HOST:PORT -- CMD` prints the output and exits with
    the command's status."""
    import os
    import subprocess
    import sys

    from helpers import free_base_port, make_home

    home = make_home(tmp_path / "h", "x", free_base_port())
    r = subprocess.run(
        [sys.executable, "-P", "-m", "operone_zmq", "--home", str(home.path), "ssh", "--key",
         str(sshd.key_path), "--known-hosts", str(known_hosts),
         f"{sshd.user}@{sshd.host}:{sshd.port}", "--", "sh", "-c", "echo hi; exit 4"],
        capture_output=True, text=True, timeout=60, env=os.environ)
    assert r.stdout == "hi\n" and r.returncode == 4, r.stderr
