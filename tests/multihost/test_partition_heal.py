"""Partitions that heal: a diamond of real brokers A-B-D / A-C-D in network
namespaces, cut and healed over and over while a client on A keeps a job for
D in flight on every priority class; after every heal, jobs must flow on
every class again within a few seconds (issue 15, "Critical")."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST_ENV, Proc, make_home, wait_for
from netns_hosts import Diamond, diamond_or_skip

from operone_zmq.config import node_signing_key
from operone_zmq.security.keys import TrustStore, load_keypair

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

LOAD = Path(__file__).with_name("heal_load.py")
CLASSES = ("critical", "high", "normal", "low")
#: Cut sets: one path (traffic must move to the other), A cut off, D cut off,
#: a cross cut.  Both leave or split the mesh, and every one heals.
CUTS = (("ab",), ("ac",), ("ab", "ac"), ("bd", "cd"), ("ab", "cd"), ("ac", "bd"))


@pytest.fixture
def net() -> Iterator[Diamond]:
    with diamond_or_skip() as d:
        yield d


class Mesh:
    """Brokers on A, B, C, D (A dials B and C, B and C dial D), a worker on D
    and the load client on A, all real processes."""

    def __init__(self, net: Diamond, tmp: Path, env: dict[str, str]) -> None:
        self.net, self.tmp, self.env = net, tmp, env
        self.homes = {h: make_home(tmp / h, h, 7700, host="0.0.0.0") for h in "abcd"}
        for x in "abcd":
            store = TrustStore(self.homes[x].trust_dir)
            for y in "abcd":
                if x != y:
                    store.accept(y, load_keypair(self.homes[y].node_public).public,
                                 signing_key=node_signing_key(self.homes[y]))
        self.procs: list[Proc] = []
        self.load_out = tmp / "load.jsonl"

    def cli(self, h: str, *args: str) -> list[str]:
        return self.net.exec_argv(h, [sys.executable, "-P", "-m", "operone_zmq", "--home",
                                      str(self.homes[h].path), *args])

    def start(self) -> None:
        n = self.net
        peers = {"a": [f"b@{n.addr('ab', 'b')}:7700", f"c@{n.addr('ac', 'c')}:7700"],
                 "b": [f"d@{n.addr('bd', 'd')}:7700"], "c": [f"d@{n.addr('cd', 'd')}:7700"],
                 "d": []}
        for h in "dbca":
            ready = self.tmp / f"{h}.ready"
            args = [a for p in peers[h] for a in ("--peer", p)]
            p = Proc(self.cli(h, "broker", "start", "--ready-file", str(ready), *args),
                     self.env, self.tmp / f"{h}-broker.log")
            self.procs.append(p)
            wait_for(lambda r=ready, p=p: r.exists() or not p.alive(), 30, f"broker {h}")
            assert p.alive(), p.output()
        wready = self.tmp / "d-worker.ready"
        w = Proc(self.cli("d", "worker", "start", "--ready-file", str(wready)), self.env,
                 self.tmp / "d-worker.log")
        self.procs.append(w)
        wait_for(wready.exists, 30, "the worker on D")
        load = Proc(self.net.exec_argv("a", [sys.executable, str(LOAD),
                                             str(self.homes["a"].path), "d",
                                             str(self.load_out), "1.5"]),
                    self.env, self.tmp / "load.log")
        self.procs.append(load)

    def records(self) -> list[dict[str, Any]]:
        if not self.load_out.exists():
            return []
        out = []
        for line in self.load_out.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return out

    def flowing_since(self, t0: float) -> set[str]:
        """The classes with a job submitted at or after ``t0`` that succeeded."""
        return {r["cls"] for r in self.records() if r["ok"] and r["sent"] >= t0}

    def wait_flowing(self, t0: float, timeout: float) -> float | None:
        """Seconds from ``t0`` until every class had a job sent after ``t0``
        succeed, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.flowing_since(t0) == set(CLASSES):
                return time.time() - t0
            time.sleep(0.1)
        return None

    def peers(self, h: str) -> Any:
        r = subprocess.run(self.cli(h, "peers", "--json"), env=self.env, capture_output=True,
                           text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else r.stderr

    def counters(self, h: str) -> Any:
        r = subprocess.run(self.cli(h, "stats", "--json"), env=self.env, capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            return r.stderr
        st = json.loads(r.stdout)["stats"]
        return {k: st[k] for k in ("unroutable", "peers_refused", "no_route", "relayed")
                if k in st}

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def run_cycles(net: Diamond, tmp: Path, *, cycles: int, cut_s: float, budget: float,
               env_extra: dict[str, str], seed: int = 15,
               hows: tuple[str, ...] = ("drop", "down", "reset")) -> dict[str, Any]:
    """Cut and heal ``cycles`` times; returns the heal times and the failures."""
    env = {**os.environ, **FAST_ENV, **env_extra}
    rng = random.Random(seed)
    mesh = Mesh(net, tmp, env)
    heals: list[float] = []
    failures: list[dict[str, Any]] = []
    try:
        mesh.start()
        first = mesh.wait_flowing(time.time(), 60)
        assert first is not None, f"jobs never flowed before any cut: {mesh.peers('a')}"
        for i in range(cycles):
            edges = rng.choice(CUTS)
            how = rng.choice(hows)
            for e in edges:
                net.cut(e, how)
            time.sleep(cut_s)
            net.heal_all()
            t0 = time.time()
            took = mesh.wait_flowing(t0, budget)
            if took is None:
                failures.append({"cycle": i, "cut": edges, "how": how,
                                 "flowing": sorted(mesh.flowing_since(t0)),
                                 "peers": {h: mesh.peers(h) for h in "abcd"},
                                 "counters": {h: mesh.counters(h) for h in "abcd"}})
                # Give it a long while to come back, so later cycles still count.
                late = mesh.wait_flowing(t0, 30)
                failures[-1]["came_back_after"] = late
                if late is None:
                    break
            else:
                heals.append(took)
    finally:
        net.heal_all()
        mesh.stop()
    return {"heals": heals, "failures": failures}


#: Cut/heal cycles in the regression test, and how long each cut lasts (s):
#: longer than peer liveness (3 x 0.3 s in FAST_ENV), so every cut is noticed.
CYCLES = int(os.environ.get("OPERONE_TEST_HEAL_CYCLES", "50"))
CUT_SECONDS = float(os.environ.get("OPERONE_TEST_HEAL_CUT", "1.5"))
#: Every heal must end with jobs flowing on every class within this (s).
HEAL_BUDGET = 5.0


@pytest.mark.timeout(60 + CYCLES * (CUT_SECONDS + HEAL_BUDGET + 2))
def test_every_heal_brings_jobs_back_on_every_class(net: Diamond, tmp_path: Path) -> None:
    res = run_cycles(net, tmp_path, cycles=CYCLES, cut_s=CUT_SECONDS, budget=HEAL_BUDGET,
                     env_extra={})
    heals = sorted(res["heals"])
    summary = (f"{len(heals)}/{CYCLES} heals within {HEAL_BUDGET} s"
               + (f"; median {heals[len(heals) // 2]:.2f} s, max {heals[-1]:.2f} s"
                  if heals else ""))
    print(summary)
    assert not res["failures"], summary + "\n" + json.dumps(res["failures"], indent=1)[:20000]
