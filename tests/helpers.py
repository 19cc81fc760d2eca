"""Test helpers: free ports, node homes, and real broker/worker processes.

Every process started here is stopped by the fixture that started it: SIGTERM,
then SIGKILL after a timeout.  Every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from operone_zmq.aio.client import Client
from operone_zmq.aio.sockets import CurveKeys
from operone_zmq.config import Home, init_home
from operone_zmq.security.keys import load_keypair

#: Environment for child processes: quick heartbeats so failure tests are quick.
FAST_ENV = {
    "OPERONE_WORKERS_HEARTBEAT_INTERVAL": "0.2",
    "OPERONE_WORKERS_HEARTBEAT_LIVENESS": "5",
    "OPERONE_LOG_LEVEL": "warning",
}


def free_base_port(span: int = 4) -> int:
    """A base port with ``span`` consecutive free TCP ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        socks = []
        try:
            for i in range(span):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free port range found")


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
        return [sys.executable, "-m", "operone_zmq", "--home", str(self.dir), *args]

    def start_broker(self, timeout: float = 20.0) -> Proc:
        ready = self.dir / f"broker-ready-{self._n}.json"
        self._n += 1
        p = Proc(self._cli("broker", "start", "--ready-file", str(ready)), self.env,
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


@contextmanager
def local_node(tmp: Path, node_id: str = "n1", **fields: Any) -> Iterator[LocalNode]:
    node = LocalNode(tmp, node_id, **fields)
    try:
        yield node
    finally:
        node.stop()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
