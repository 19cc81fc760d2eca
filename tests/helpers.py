"""Test helpers: free ports, node homes, and real broker/worker processes.

Every process started here is stopped by the fixture that started it: SIGTERM,
then SIGKILL after a timeout.  Every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq

import operone_zmq
from operone_zmq.aio.client import Client
from operone_zmq.aio.sockets import CurveKeys, free_base_port
from operone_zmq.config import Home, init_home, node_signing_key
from operone_zmq.security.keys import TrustStore, load_keypair

#: Environment for child processes: quick heartbeats so failure tests are quick.
FAST_ENV = {
    "OPERONE_BROKER_HEARTBEAT_INTERVAL": "0.3",
    "OPERONE_WORKERS_HEARTBEAT_INTERVAL": "0.2",
    "OPERONE_WORKERS_HEARTBEAT_LIVENESS": "5",
    "OPERONE_LOG_LEVEL": "warning",
}


#: For a test that replaces a method of one of the package's classes: in the
#: compiled build (README "Install") those classes are native and their
#: methods cannot be replaced, so such a test runs on the pure build only.
pure_build_only = pytest.mark.skipif(
    bool(operone_zmq.compiled_modules()),
    reason="replaces a method of a class that the compiled build compiles")


def inproc_pair(ctx: zmq.Context[zmq.Socket[bytes]], name: str,
                **opts: int) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """Two PAIR sockets over ``inproc://name`` (bound, connected), LINGER 0
    and each ``opts`` socket option (``RCVHWM=0``...) set on both; the caller
    closes them."""
    bound, connected = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    for s in (bound, connected):
        s.setsockopt(zmq.LINGER, 0)
        for opt, value in opts.items():
            s.setsockopt(getattr(zmq, opt), value)
    bound.bind(f"inproc://{name}")
    connected.connect(f"inproc://{name}")
    return bound, connected


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """Poll ``pred`` until truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def make_home(path: Path, node_id: str, base_port: int, **fields: Any) -> Home:
    """An initialised node home with its own keys."""
    home = Home(path)
    init_home(home, node_id, base_port=base_port, **fields)
    return home


class Proc:
    """A child process of the CLI, stopped for sure."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._out.close()
        return self.p.returncode

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")


class LocalNode:
    """One node's home, with its broker and workers as real processes."""

    def __init__(self, tmp: Path, node_id: str = "n1", **fields: Any) -> None:
        self.dir = tmp / node_id
        self.base_port = free_base_port()
        self.home = make_home(self.dir, node_id, self.base_port, **fields)
        self.node_id = node_id
        self.procs: list[Proc] = []
        self.env = {**os.environ, **FAST_ENV, "OPERONE_HOME": str(self.dir)}
        self.env.pop("OPERONE_NODE_ID", None)
        self._n = 0

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-P", "-m", "operone_zmq", "--home", str(self.dir), *args]

    def start_broker(self, *args: str, timeout: float = 20.0) -> Proc:
        ready = self.dir / f"broker-ready-{self._n}.json"
        self._n += 1
        p = Proc(self._cli("broker", "start", "--ready-file", str(ready), *args), self.env,
                 self.dir / f"broker-{self._n}.log")
        self.procs.append(p)
        wait_for(lambda: ready.exists() or not p.alive(), timeout, "the broker to start")
        if not p.alive():
            raise RuntimeError(f"broker exited:\n{p.output()}")
        return p

    def start_worker(self, name: str | None = None, *args: str, timeout: float = 20.0) -> Proc:
        self._n += 1
        name = name or f"{self.node_id}.w{self._n}"
        ready = self.dir / f"worker-ready-{self._n}.json"
        p = Proc(self._cli("worker", "start", "--name", name, "--ready-file", str(ready), *args),
                 self.env, self.dir / f"worker-{self._n}.log")
        self.procs.append(p)
        wait_for(lambda: ready.exists() or not p.alive(), timeout, "the worker to start")
        if not p.alive():
            raise RuntimeError(f"worker exited:\n{p.output()}")
        return p

    def keys(self) -> CurveKeys:
        kp = load_keypair(self.home.node_secret)
        assert kp.secret is not None
        return CurveKeys(kp.public, kp.secret, kp.public)

    def client(self, **kw: Any) -> Client:
        return Client("127.0.0.1", self.base_port, keys=self.keys(), **kw)

    def wait_workers(self, n: int, timeout: float = 20.0) -> None:
        with self.client() as c:
            wait_for(lambda: c.stats()["workers"] >= n, timeout, f"{n} workers to register",
                     step=0.05)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def trust(self, other: LocalNode, name: str | None = None, **kinds: Any) -> None:
        """Trust ``other``'s node key under its node id (or ``name``), with its
        signing key; ``kinds``: TrustStore.accept's role arguments."""
        store = TrustStore(self.home.trust_dir)
        kinds.setdefault("signing_key", node_signing_key(other.home))
        store.accept(name or other.node_id, load_keypair(other.home.node_public).public,
                     **kinds)

    @property
    def address(self) -> str:
        return f"{self.node_id}@127.0.0.1:{self.base_port}"


class MeshOfNodes:
    """Several nodes on 127.0.0.1 that trust each other's keys."""

    def __init__(self, tmp: Path, names: list[str]) -> None:
        self.nodes = {n: LocalNode(tmp, n) for n in names}
        for a in self.nodes.values():
            for b in self.nodes.values():
                if a is not b:
                    a.trust(b)

    def __getitem__(self, name: str) -> LocalNode:
        return self.nodes[name]

    def start(self, links: list[tuple[str, str]]) -> None:
        """Start every broker; ``(a, b)`` in links: a dials b."""
        dials: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in links:
            dials[a] += ["--peer", self.nodes[b].address]
        for n, node in self.nodes.items():
            node.start_broker(*dials[n])

    def wait_converged(self, timeout: float = 30.0) -> None:
        """Until every broker routes to every other one."""
        names = set(self.nodes)
        clients = {n: node.client() for n, node in self.nodes.items()}
        try:
            def done() -> bool:
                for c in clients.values():
                    reach = {x["id"] for x in c.topology()["nodes"] if x["reachable"]}
                    if reach != names:
                        return False
                return True

            wait_for(done, timeout, "the mesh to converge", step=0.1)
        finally:
            for c in clients.values():
                c.close()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@contextmanager
def local_node(tmp: Path, node_id: str = "n1", **fields: Any) -> Iterator[LocalNode]:
    node = LocalNode(tmp, node_id, **fields)
    try:
        yield node
    finally:
        node.stop()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
