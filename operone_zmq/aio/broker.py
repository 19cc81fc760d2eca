"""Broker (exported as PeerNetwork too): the asyncio/ZeroMQ shell of BrokerCore.

It binds one CurveZMQ ROUTER per priority class on consecutive ports, a
local ROUTER for workers, runs a ZAP authenticator on its own Context that
admits only keys in the trust store, and moves frames between the sockets
and :class:`~operone_zmq.core.broker.BrokerCore`.  All decisions are the
core's; this module only reads, writes and keeps time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..core.broker import CLASS_NAMES, WORKERS, BrokerCore, BrokerLimits
from ..errors import ConfigError
from .pump import Pump
from .sockets import CurveKeys, SocketLimits, make_socket

__all__ = ["ZAP_DOMAIN", "Broker", "KeyChecker", "default_worker_endpoint"]

log = structlog.get_logger("operone.broker")

#: The ZAP domain our CurveZMQ servers announce and our authenticator serves.
ZAP_DOMAIN = "operone"


class KeyChecker(Protocol):
    """What the ZAP authenticator asks: is this client key trusted?"""

    def callback(self, domain: str, key: bytes) -> bool: ...


def default_worker_endpoint(run_dir: Path, base_port: int) -> str:
    """ipc:// under the node's private run directory where the OS has it,
    else TCP on loopback (then CurveZMQ protects it too)."""
    if sys.platform != "win32" and zmq.has("ipc"):
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = run_dir / f"broker-{base_port}.sock"
        # ipc paths are limited to ~107 bytes by sockaddr_un.
        if len(str(path)) < 100:
            return f"ipc://{path}"
    return f"tcp://127.0.0.1:{base_port + 10}"


def _bind_private(sock: zmq.Socket[bytes], endpoint: str) -> None:
    """Bind the workers' endpoint; an ipc:// file is owner-only, and one left
    over by a broker that was killed is replaced."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if os.path.exists(path):
            os.unlink(path)
        sock.bind(endpoint)
        os.chmod(path, 0o600)
    else:
        sock.bind(endpoint)


class Broker:
    """One node of the mesh: frontends per priority class, workers, jobs."""

    def __init__(
        self,
        node_id: str,
        *,
        keys: CurveKeys,
        trust: KeyChecker,
        host: str = "127.0.0.1",
        base_port: int = 7700,
        worker_endpoint: str,
        limits: BrokerLimits | None = None,
        socket_limits: SocketLimits | None = None,
        name: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.name = name or node_id
        self.host = host
        self.base_port = base_port
        self.worker_endpoint = worker_endpoint
        self._keys = keys
        self._trust = trust
        self._limits = limits or BrokerLimits()
        self._socket_limits = socket_limits or SocketLimits()
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._pump: Pump | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopped: asyncio.Event | None = None
        self.core = BrokerCore(node_id, limits=self._limits, now=time.monotonic())
        self._log = log.bind(node=node_id)
        self._listeners: dict[str, list[Callable[..., Any]]] = {}

    # ------------------------------------------------------------ lifecycle
    @property
    def endpoints(self) -> list[str]:
        """The frontend endpoint of each priority class, critical first."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return [f"tcp://{host}:{self.base_port + i}" for i in range(4)]

    async def start(self) -> None:
        """Bind every socket and start serving."""
        if self._pump is not None:
            return
        loop = asyncio.get_running_loop()
        self.core = BrokerCore(self.node_id, limits=self._limits, now=time.monotonic())
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._ctx = ctx
        auth = ThreadAuthenticator(ctx, log=structlog.get_logger("operone.zap"))
        auth.start()
        auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self._trust)
        self._auth = auth
        pump = Pump(loop, self._on_message, self._after_run, on_unroutable=self.core_unroutable)
        socks: list[zmq.Socket[bytes]] = []
        try:
            for ep in self.endpoints:
                s = make_socket(ctx, zmq.ROUTER, limits=self._socket_limits, curve=self._keys,
                                curve_server=True)
                socks.append(s)
                if ":" in self.host:
                    s.setsockopt(zmq.IPV6, 1)
                s.bind(ep)
            ws = make_socket(
                ctx, zmq.ROUTER, limits=self._socket_limits,
                curve=self._keys if self.worker_endpoint.startswith("tcp") else None,
                curve_server=self.worker_endpoint.startswith("tcp"), router_handover=True)
            socks.append(ws)
            _bind_private(ws, self.worker_endpoint)
        except zmq.ZMQError as exc:
            for s in socks:
                s.close(0)
            auth.stop()
            ctx.term()
            self._ctx = None
            self._auth = None
            raise ConfigError(
                f"cannot bind broker '{self.node_id}' on {self.host}:{self.base_port}..+3 or"
                f" {self.worker_endpoint}: {exc}"
            ) from exc
        for s in socks:
            pump.add(s)
        self._pump = pump
        self._stopped = asyncio.Event()
        self._schedule(time.monotonic())
        self._log.info("broker_started", endpoints=self.endpoints, workers=self.worker_endpoint)

    async def stop(self) -> None:
        """Answer every job in progress, tell workers, close everything.
        Safe to call twice."""
        pump = self._pump
        if pump is None:
            return
        self.core.shutdown()
        self._flush(time.monotonic())
        self._pump = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pump.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self.worker_endpoint.startswith("ipc://"):
            try:
                os.unlink(self.worker_endpoint[len("ipc://"):])
            except OSError:
                pass
        if self._stopped is not None:
            self._stopped.set()
        self._log.info("broker_stopped")

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_stopped(self) -> None:
        """Return once :meth:`stop` has run."""
        if self._stopped is not None:
            await self._stopped.wait()

    # -------------------------------------------------------------- pumping
    def _on_message(self, idx: int, frames: list[bytes], now: float) -> None:
        if idx == WORKERS:
            self.core.on_worker(frames, now)
        else:
            self.core.on_frontend(idx, frames, now)

    def core_unroutable(self, idx: int, frames: list[bytes], now: float) -> None:
        """A send found no such peer: let the core decide what that means."""
        self.core.on_unroutable(idx, frames, now)

    def _flush(self, now: float) -> None:
        pump = self._pump
        if pump is None:
            self.core.out.clear()
            return
        out = self.core.out
        # Handling an unroutable send may add messages: loop until empty.
        while out:
            batch = out[:]
            out.clear()
            send = pump.send
            for idx, frames in batch:
                send(idx, frames, now)

    def _after_run(self, now: float) -> None:
        if now >= self._timer_at:
            self._tick()
            return
        self._flush(now)
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        at = self.core.next_deadline()
        if at >= self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + max(0.0, at - now), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if self._pump is None:
            return
        now = time.monotonic()
        self.core.tick(now)
        self._flush(now)
        self._schedule(now)

    # ------------------------------------------------------------- queries
    def stats(self) -> dict[str, Any]:
        """The broker's counters and gauges (as ``operone stats`` shows)."""
        s = self.core.stats(time.monotonic())
        pump = self._pump
        if pump is not None:
            s["send_backlog"] = {
                name: pump.pending(i) for i, name in enumerate((*CLASS_NAMES, "workers"))
            }
            s["dropped_sends"] = pump.dropped
        return s
