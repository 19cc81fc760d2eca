"""Brokers on a LAN of network namespaces find and link to each other with
zeroconf; untrusted advertisers are listed as pending, never linked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FAST_ENV, Proc, make_home, wait_for
from netns_hosts import Lan, lan_or_skip

from operone_zmq.config import node_signing_key
from operone_zmq.security.keys import TrustStore, load_keypair

pytestmark = pytest.mark.multihost


@pytest.fixture
def lan() -> Iterator[Lan]:
    with lan_or_skip(3) as net:
        yield net


def test_brokers_discover_and_link(lan: Lan, tmp_path: Path) -> None:
    """a and b trust each other and link by themselves; c is untrusted: a and
    b list it as pending and do not link to it, until a and c accept each
    other's keys (then they link, without a restart); when b stops, a loses it."""
    hosts = {"a": 1, "b": 2, "c": 3}
    homes = {n: make_home(tmp_path / n, n, 7700, host=lan.addr[i]) for n, i in hosts.items()}
    for x, y in (("a", "b"), ("b", "a")):
        TrustStore(homes[x].trust_dir).accept(y, load_keypair(homes[y].node_public).public,
                                              signing_key=node_signing_key(homes[y]))
    env = {**os.environ, **FAST_ENV}
    procs: dict[str, Proc] = {}

    def cli(n: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", lan.ns[hosts[n]], sys.executable, "-P", "-m", "operone_zmq",
                "--home", str(homes[n].path), *args]

    def peers(n: str) -> dict[str, dict[str, object]]:
        r = subprocess.run(cli(n, "peers", "--json"), env=env, capture_output=True, text=True,
                           timeout=30)
        return {p["node"]: p for p in json.loads(r.stdout)} if r.returncode == 0 else {}

    try:
        for n in hosts:
            ready = tmp_path / f"{n}.ready"
            procs[n] = Proc(cli(n, "broker", "start", "--discover", "--ready-file", str(ready)),
                            env, tmp_path / f"{n}.log")
            wait_for(lambda r=ready, p=procs[n]: r.exists() or not p.alive(), 20, f"broker {n}")
            assert procs[n].alive(), procs[n].output()
        wait_for(lambda: peers("a").get("b", {}).get("state") == "up", 30,
                 "a and b to link through zeroconf", step=0.3)
        assert peers("b")["a"]["state"] == "up"
        assert "c" not in peers("a") and "c" not in peers("b")
        pending = {k.name for k in TrustStore(homes["a"].trust_dir).list()
                   if k.status == "pending"}
        assert "c" in pending
        found = subprocess.run(cli("a", "discover", "--json", "--timeout", "3"), env=env,
                               capture_output=True, text=True, timeout=30)
        rows = {r["node"]: r for r in json.loads(found.stdout)}
        assert rows["b"]["trusted"] and not rows["c"]["trusted"]
        # The operator accepts the pending keys (the hint `discover` prints):
        # the running brokers link, no restart (issue 13: no link after 30 s).
        r = subprocess.run(cli("a", "keys", "accept", "c"), env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        TrustStore(homes["c"].trust_dir).accept("a", load_keypair(homes["a"].node_public).public)
        wait_for(lambda: peers("a").get("c", {}).get("state") == "up", 30,
                 "a and c to link once their keys are accepted", step=0.3)
        procs["b"].stop()
        wait_for(lambda: peers("a").get("b", {}).get("state") != "up", 20,
                 "a to lose b")
        again = subprocess.run(cli("a", "discover", "--json", "--timeout", "2"), env=env,
                               capture_output=True, text=True, timeout=30)
        assert "b" not in {r["node"] for r in json.loads(again.stdout)}
    finally:
        for p in procs.values():
            p.stop()
