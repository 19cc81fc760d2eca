"""Three hosts in network namespaces: a job from A runs on C through B."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST_ENV, Proc, make_home, wait_for
from netns_hosts import Hosts

from operone_zmq.config import node_signing_key
from operone_zmq.security.keys import TrustStore, load_keypair

pytestmark = pytest.mark.multihost


def test_job_from_a_runs_on_c_through_b(hosts: Hosts, tmp_path: Path) -> None:
    """A and C are only linked to B; a job from A for C is relayed by B."""
    binds = {"a": hosts.addr["a"], "b": "0.0.0.0", "c": hosts.addr["c"]}
    homes = {h: make_home(tmp_path / h, h, 7700, host=binds[h]) for h in "abc"}
    for x in "abc":
        store = TrustStore(homes[x].trust_dir)
        for y in "abc":
            if x != y:
                store.accept(y, load_keypair(homes[y].node_public).public,
                             signing_key=node_signing_key(homes[y]))
    env = {**os.environ, **FAST_ENV}
    procs: list[Proc] = []

    def cli(host: str, *args: str) -> list[str]:
        return hosts.exec_argv(host, [sys.executable, "-P", "-m", "operone_zmq", "--home",
                                      str(homes[host].path), *args])

    try:
        # A cannot reach C directly: the namespaces have no route between them.
        ping = subprocess.run(hosts.exec_argv("a", [sys.executable, "-P", "-c", (
            "import socket,sys; s=socket.socket(); s.settimeout(1)\n"
            f"try: s.connect(('{hosts.addr['c']}', 7700)); sys.exit(0)\n"
            "except OSError: sys.exit(3)")]), capture_output=True, timeout=20)
        assert ping.returncode == 3
        peers = {"a": ["--peer", f"b@{hosts.addr['b1']}:7700"], "b": [],
                 "c": ["--peer", f"b@{hosts.addr['b2']}:7700"]}
        for h in "bac":
            ready = tmp_path / f"{h}.ready"
            p = Proc(cli(h, "broker", "start", "--ready-file", str(ready), *peers[h]), env,
                     tmp_path / f"{h}-broker.log")
            procs.append(p)
            wait_for(lambda r=ready, p=p: r.exists() or not p.alive(), 20, f"broker {h}")
            assert p.alive(), p.output()
        wready = tmp_path / "c-worker.ready"
        w = Proc(cli("c", "worker", "start", "--ready-file", str(wready)), env,
                 tmp_path / "c-worker.log")
        procs.append(w)
        wait_for(wready.exists, 20, "the worker on C")

        def route_ok() -> bool:
            r = subprocess.run(cli("a", "route", "c", "--json"), env=env, capture_output=True,
                               text=True, timeout=30)
            return r.returncode == 0 and json.loads(r.stdout).get("path") == ["a", "b", "c"]

        wait_for(route_ok, 30, "A to learn a route to C through B", step=0.3)
        run = subprocess.run(cli("a", "run", "sysinfo", "--on", "c"), env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["executed_on"] == "c"
        b_stats = subprocess.run(cli("b", "stats", "--json"), env=env, capture_output=True,
                                 text=True, timeout=30)
        assert json.loads(b_stats.stdout)["stats"]["relayed"] >= 2
    finally:
        for p in reversed(procs):
            p.stop()
