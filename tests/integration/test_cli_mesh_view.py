"""The mesh at a glance (issue 13): `status` (and `status --watch` read
through a pseudo-terminal), `tools`, `peers`, `topology`, driven as a user
does against real brokers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LocalNode, MeshOfNodes, wait_for

pytestmark = pytest.mark.integration


def cli(node: LocalNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "operone_zmq", *args], env=node.env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[MeshOfNodes]:
    m = MeshOfNodes(tmp_path, ["a", "b"])
    try:
        m.start([("a", "b")])
        m["b"].start_worker(None, "--cap", "gpu")
        m.wait_converged()
        with m["a"].client() as c:
            wait_for(lambda: any("sleep" in n["tools"] for n in c.topology()["nodes"]
                                 if n["id"] == "b"), 30, "b's tools to reach a", step=0.1)
        yield m
    finally:
        m.stop()


def test_status_tools_peers_topology(pair: MeshOfNodes) -> None:
    a = pair["a"]
    r = cli(a, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "connected" in out and "jobs/s" in out and "in flight" in out
    assert re.search(r"\* a\s", out) and re.search(r"\bb\b.*\bup\b", out)
    assert "gpu" in out  # b's capability
    snap = json.loads(cli(a, "status", "--json").stdout)
    assert {"stats", "peers", "graph", "network", "qos", "jobs_per_second"} <= set(snap)
    # tools: every tool of the mesh, with the nodes offering it; parameters for
    # tools whose workers are local (b's, seen from b).
    t = json.loads(cli(pair["b"], "tools", "--json").stdout)
    sleep = next(x for x in t["tools"] if x["name"] == "sleep")
    assert sleep["nodes"] == ["b"] and sleep["params"][0]["name"] == "seconds"
    assert sleep["caps"] == ["gpu"]
    text = cli(pair["b"], "tools").stdout
    assert "sleep(seconds: float)" in text and "on b" in text
    seen_from_a = cli(a, "tools", "--node", "b")
    assert seen_from_a.returncode == 0 and "sleep(...)" in seen_from_a.stdout
    assert cli(a, "tools", "--node", "nowhere").stdout.strip() == "no tools on nowhere"
    peers = cli(a, "peers").stdout.splitlines()
    assert peers[0].split()[:3] == ["NODE", "STATE", "TRANSPORTS"]
    assert f"dialled 127.0.0.1:{pair['b'].base_port} up" in peers[1]
    assert "accepted up" in cli(pair["b"], "peers").stdout
    topo = cli(a, "topology").stdout
    assert "connected" in topo and "partitions" not in topo
    dot = cli(a, "topology", "--format", "dot").stdout
    assert "cluster_legend" in dot and "caps: gpu" in dot


def test_status_watch_redraws_in_place_on_a_terminal(pair: MeshOfNodes) -> None:
    a = pair["a"]
    master, slave = pty.openpty()
    env = {**a.env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
    p = subprocess.Popen([sys.executable, "-P", "-m", "operone_zmq", "status", "--watch",
                          "--interval", "0.3"], env=env, stdin=slave, stdout=slave,
                         stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        # Two frames at least: the second one moves the cursor back up to redraw.
        while time.monotonic() < deadline and not (seen.count(b"links") >= 2
                                                   and re.search(rb"\x1b\[\d*A", seen)):
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        assert seen.count(b"links") >= 2, seen[-2000:]
        assert re.search(rb"\x1b\[\d*A", seen), "no cursor-up: not redrawn in place"
        assert b"connected" in seen and b"since" in seen and b"Traceback" not in seen
        p.send_signal(signal.SIGINT)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        os.close(master)


def test_events_show_a_broadcast_with_its_sender(pair: MeshOfNodes) -> None:
    a, b = pair["a"], pair["b"]
    first = json.loads(cli(a, "events", "--json").stdout.splitlines()[-1])
    follow = subprocess.Popen([sys.executable, "-P", "-m", "operone_zmq", "events", "-f", "--json",
                               "--since", str(first["seq"])], env=a.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = cli(b, "broadcast", '{"hello": 1}')
        assert r.returncode == 0, r.stderr
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        got = None
        while time.monotonic() < deadline:
            e = json.loads(follow.stdout.readline())
            if e["event"] == "message":
                got = e
                break
        assert got is not None and got["data"]["src"] == "b"
        assert got["data"]["data"] == {"type": "notification", "data": {"hello": 1}}
        follow.send_signal(signal.SIGINT)
        follow.communicate(timeout=20)
        assert follow.returncode == 0
    finally:
        if follow.poll() is None:
            follow.kill()
        follow.communicate(timeout=5)


def test_connect_keeps_a_working_link_and_shows_a_refusal_at_once(pair: MeshOfNodes,
                                                                   tmp_path: Path) -> None:
    a, b = pair["a"], pair["b"]
    r = cli(a, "connect", f"b@127.0.0.1:{b.base_port + 100}")
    assert r.returncode == 1 and "not replacing that link" in r.stderr, r.stderr
    assert "--replace" in r.stderr
    assert cli(a, "peers").stdout.count(f"127.0.0.1:{b.base_port} up") == 1  # untouched
    again = cli(a, "connect", f"b@127.0.0.1:{b.base_port}")  # the same address: fine
    assert again.returncode == 0 and again.stdout.strip() == "b: up", again.stderr
    # At once: cli() gives up after 60 s, long before this --wait.
    r = cli(a, "connect", "stranger@127.0.0.1:9", "--wait", "600")
    assert r.returncode == 1 and "no trusted key for node 'stranger'" in r.stderr, r.stderr
