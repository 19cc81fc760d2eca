"""The two client -> broker -> worker stacks the foundation and mesh sets compare.

:class:`RawStack` is the raw pyzmq baseline (``raw.py``) in three processes,
:class:`RawChain` the same with relays chained in front of its broker, and
:class:`OperoneStack` real ``operone broker start`` and ``operone worker
start`` processes on a fresh home with an :class:`AsyncClient` in this one.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import zmq
from _benchlib import START_TIMEOUT, Child, free_base_port, operone_argv

from .harness import Submit
from .raw import RawClient

#: 64 KiB: the bulk payload of DESIGN.md section 11.
BULK_SIZE = 64 * 1024


class Stack:
    """A running client -> broker -> worker stack; ``submit_*`` make requests."""

    name = "?"
    broker_pid = 0
    worker_pid = 0
    #: Output of child processes that printed anything, by process name.
    logs: dict[str, list[str]]

    def submit_noop(self) -> asyncio.Future[Any]:
        raise NotImplementedError

    def submit_bulk(self) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class RawStack(Stack):
    name = "baseline"

    def __init__(self, work: Path, python: list[str], frames: int = 1) -> None:
        self.work = work
        self.frames = frames
        work.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.children: list[Child] = []
        self.logs = {}
        self.client: RawClient | None = None
        self._bulk = b"x" * BULK_SIZE

    async def start(self) -> None:
        pub, sec = zmq.curve_keypair()
        backend = f"ipc://{self.work}/raw-backend.sock"
        bready, wready = self.work / "raw-broker.ready", self.work / "raw-worker.ready"
        b = Child("raw broker", [*self.python, "_raw-broker", "--backend", backend,
                                 f"--public={pub.decode()}", f"--secret={sec.decode()}",
                                 "--ready-file", str(bready)], self.work / "raw-broker.log")
        self.children.append(b)
        info = await asyncio.to_thread(b.wait_ready, bready)
        w = Child("raw worker", [*self.python, "_raw-worker", "--backend", backend,
                                 "--ready-file", str(wready)], self.work / "raw-worker.log")
        self.children.append(w)
        await asyncio.to_thread(w.wait_ready, wready)
        self.broker_pid, self.worker_pid = b.pid, w.pid
        self.server_keys = (pub, sec)
        self.broker_port = int(info["port"])
        self.client = RawClient(self.broker_port, pub, self.frames)

    def submit_noop(self) -> asyncio.Future[Any]:
        assert self.client is not None
        return self.client.submit(b"")

    def submit_bulk(self) -> asyncio.Future[Any]:
        assert self.client is not None
        return self.client.submit(self._bulk)

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        for c in reversed(self.children):
            c.stop()
            lines = c.complaints()
            if lines:
                self.logs[c.name] = lines
        self.children.clear()


class RawChain(RawStack):
    """The mesh set's baseline: the raw stack with ``hops`` raw relays chained in
    front of its broker; ``clients[k]`` reaches the broker through k relays
    (``clients[0]`` is the plain raw stack's client)."""

    name = "raw chain"

    def __init__(self, work: Path, python: list[str], hops: int, frames: int = 1) -> None:
        super().__init__(work, python, frames)
        self.hops = hops
        self.clients: list[RawClient] = []

    async def start(self) -> None:
        await super().start()
        assert self.client is not None
        pub, sec = self.server_keys
        self.clients = [self.client]
        port = self.broker_port
        for k in range(1, self.hops + 1):
            ready = self.work / f"raw-relay{k}.ready"
            r = Child(f"raw relay {k}", [*self.python, "_raw-relay", "--upstream-port",
                                         str(port), f"--public={pub.decode()}",
                                         f"--secret={sec.decode()}", "--ready-file", str(ready)],
                      self.work / f"raw-relay{k}.log")
            self.children.append(r)
            port = int((await asyncio.to_thread(r.wait_ready, ready))["port"])
            self.clients.append(RawClient(port, pub, self.frames))

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.alive()}

    def submitter(self, hops: int) -> Submit:
        client = self.clients[hops]

        def submit() -> asyncio.Future[Any]:
            return client.submit(b"")
        return submit

    async def close(self) -> None:
        for c in self.clients[1:]:
            c.close()
        self.clients = []
        await super().close()


class OperoneStack(Stack):
    name = "operone"

    def __init__(self, work: Path, *, concurrency: int | None, profile: Path | None) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.profile = profile
        self.children: list[Child] = []
        self.logs = {}
        self.client: Any = None
        self._bulk_args = {"data": b"x" * BULK_SIZE}

    def _argv(self, what: str, *args: str) -> list[str]:
        prof: list[str] = []
        if self.profile is not None:
            prof = ["-m", "cProfile", "-o", str(self.profile / f"{what}.prof")]
        argv = operone_argv("--home", str(self.home.path), what, "start", *args)
        return [*argv[:2], *prof, *argv[2:]]  # python -P [-m cProfile -o F] -m operone_zmq

    async def start(self) -> None:
        from operone_zmq.aio.client import AsyncClient
        from operone_zmq.aio.sockets import CurveKeys
        from operone_zmq.config import Home, init_home

        self.home = Home(self.work / "home")
        base = free_base_port()
        _, kp = init_home(self.home, "bench", base_port=base)
        assert kp.secret is not None
        keys = CurveKeys(kp.public, kp.secret, kp.public)
        env = {**os.environ, "OPERONE_HOME": str(self.home.path),
               "OPERONE_LOG_LEVEL": "warning"}
        env.pop("OPERONE_NODE_ID", None)
        bready, wready = self.work / "op-broker.ready", self.work / "op-worker.ready"
        b = Child("operone broker", self._argv("broker", "--ready-file", str(bready)),
                  self.work / "op-broker.log", env)
        self.children.append(b)
        await asyncio.to_thread(b.wait_ready, bready)
        extra = ["--concurrency", str(self.concurrency)] if self.concurrency else []
        w = Child("operone worker", self._argv("worker", "--name", "bench.w1", "--ready-file",
                                               str(wready), *extra),
                  self.work / "op-worker.log", env)
        self.children.append(w)
        await asyncio.to_thread(w.wait_ready, wready)
        self.broker_pid, self.worker_pid = b.pid, w.pid
        # Wait until the worker has registered, with a separate client so the
        # benchmark client only ever opens the socket of the class it uses.
        async with AsyncClient("127.0.0.1", base, keys=keys) as probe:
            deadline = time.monotonic() + START_TIMEOUT
            while "echo" not in await probe.tools():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the worker did not register:\n{w.tail()}")
                await asyncio.sleep(0.05)
        self.client = await AsyncClient("127.0.0.1", base, keys=keys).connect()

    def submit_noop(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.client.submit("echo")
        return fut

    def submit_bulk(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.client.submit("echo", self._bulk_args)
        return fut

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        for c in reversed(self.children):
            c.stop()
            lines = c.complaints()
            if lines:
                self.logs[c.name] = lines
        self.children.clear()
