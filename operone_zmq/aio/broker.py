"""Broker (exported as PeerNetwork too): the asyncio/ZeroMQ shell of BrokerCore.

It binds one CurveZMQ ROUTER per priority class on consecutive ports, a
local ROUTER for workers, runs a ZAP authenticator on its own Context that
admits only keys in the trust store, and moves frames between the sockets
and :class:`~operone_zmq.core.broker.BrokerCore`.  All decisions are the
core's; this module only reads, writes and keeps time.  The sockets of the
links this broker dials (incarnations, monitors, re-dials) are
:class:`~operone_zmq.aio.dialler.Dialler`'s; reading and writing all
sockets is :class:`~operone_zmq.aio.pump.Pump`'s; who may link to it and what a
client key may do, :class:`~operone_zmq.aio.authority.Authority`'s; telling
the core's events to listeners, the log and the futures waiting on links and
routes, :class:`~operone_zmq.aio.mesh_events.MeshEvents`'; linking to the
brokers zeroconf finds, :class:`~operone_zmq.aio.discovered.DiscoveredPeers`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..core.broker import CLASS_NAMES, WORKERS, BrokerCore, BrokerLimits
from ..errors import ConfigError, NoRoute, OperoneError
from ..protocol.batch import MIN_SIZE_TO_BATCH, is_batch
from ..protocol.frame import Frame
from ..protocol.limits import peer_address_problem
from ..protocol.signature import Signer
from ..tools import ToolRegistry
from .authority import Authority, KeyChecker
from .dialler import Dialler
from .discovered import DiscoveredPeers
from .fdlimit import ensure_fd_budget
from .inproc import InprocTools
from .legacy import LegacyHost, LegacyRunner
from .mesh_events import MeshEvents
from .pump import Pump
from .sockets import CurveKeys, SocketLimits, make_socket

__all__ = ["ZAP_DOMAIN", "Broker", "PeerAddress"]

log: Final = structlog.get_logger("operone.broker")

#: The ZAP domain our CurveZMQ servers announce and our authenticator serves.
ZAP_DOMAIN: Final = "operone"


#: Peer link establishment must finish within this many seconds for
#: connect_to_peer() to succeed (the link keeps retrying in the background).
# (Not Final: as the default of a parameter after keyword-only ones without a
# default, mypyc (2.4) fails writing the method's text signature.)
CONNECT_TIMEOUT = 10.0



@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a neighbour broker listens, and which node it must be."""

    node: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """``NODE@HOST:PORT`` (the port is the neighbour's base port)."""
        node, at, rest = text.partition("@")
        host, colon, port = rest.rpartition(":")
        if (not at or not node or not colon or not host or not port.isascii()
                or not port.isdigit() or len(port) > 5):
            raise ConfigError(
                f"peer {text!r} must be NODE@HOST:PORT (NODE is the peer's node id; its key"
                " must be trusted here under that name: operone keys accept NODE KEYFILE)")
        host = host.strip("[]")
        problem = peer_address_problem(host, int(port))
        if problem is not None:
            raise ConfigError(f"peer {text!r}: {problem}")
        return cls(node, host, int(port))


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
        worker_endpoint: str,
        host: str = "127.0.0.1",
        base_port: int = 7700,
        limits: BrokerLimits | None = None,
        socket_limits: SocketLimits | None = None,
        name: str | None = None,
        cluster: str = "operone",
        peers: list[PeerAddress] | None = None,
        jwt_secret: str | None = None,
        require_token: bool = False,
        token_ttl: float = 3600.0,
        discover: bool = False,
        legacy_hosts: list[LegacyHost] | None = None,
        signer: Signer | None = None,
        signatures: bool = True,
    ) -> None:
        self.node_id = node_id
        self.name = name or node_id
        self.cluster = cluster
        self._peers = list(peers or [])
        self._self_client: Any = None
        self._discover = discover
        self._inproc: InprocTools | None = None
        self._flushing = False
        self._inproc_registry: ToolRegistry | None = None
        self._legacy_hosts = list(legacy_hosts or [])
        self._legacy: LegacyRunner | None = None
        self.host = host
        self.base_port = base_port
        self.worker_endpoint = worker_endpoint
        self._keys = keys
        self._trust = trust
        #: Who may link to us and what client keys may do (the trust store, tokens).
        self._authority = Authority(node_id, cluster, keys.public, trust, jwt_secret=jwt_secret,
                                    require_token=require_token, token_ttl=token_ttl)
        #: Our Ed25519 signing key (brokers made without one get a key of
        #: their own for this run: their neighbours learn it from HELLO).
        #: (``signatures=False``: none, and nothing is verified; benchmarks only.)
        self._signer = (signer or Signer.generate()) if signatures else None
        self._limits = limits or BrokerLimits()
        self._socket_limits = socket_limits or SocketLimits()
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._pump: Pump | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopped: asyncio.Event | None = None
        self.core = self._new_core()
        self.core.batching = self._socket_limits.max_message_size >= MIN_SIZE_TO_BATCH
        self._log = log.bind(node=node_id)
        self._dialler = Dialler(node_id, keys, trust, self._socket_limits,
                                changed=self._dialled, emit=self._emit_events, log=self._log)
        self._mesh_events = MeshEvents(self._log, redial_soon=self._dialler.redial_soon,
                                       stale_refusal=self._dialler.predates_incarnations)
        #: The listeners of :meth:`on`.
        self.events = self._mesh_events.emitter
        self._discovery = DiscoveredPeers(
            node_id, cluster=cluster, host=host, port=base_port,
            public_key=keys.public.decode("ascii"), name=self.name, trust=trust,
            dialler=self._dialler, report=self._report, log=self._log)

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
        ensure_fd_budget(self._limits.max_clients, self._limits.max_peers)
        self.core = self._new_core()
        self.core.batching = self._socket_limits.max_message_size >= MIN_SIZE_TO_BATCH
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._ctx = ctx
        auth = ThreadAuthenticator(ctx, log=structlog.get_logger("operone.zap"))
        auth.start()
        auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self._trust)
        self._auth = auth
        pump = Pump(loop, self._on_message, self._after_run, on_unroutable=self.core_unroutable,
                    on_oversize=self.core_oversize,
                    max_bytes=self._socket_limits.max_message_size)
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
        for i, s in enumerate(socks):
            pump.add(s, with_user_id=i < WORKERS, drop_full=i < WORKERS)
        self._pump = pump
        self._dialler.start(pump, ctx, self.core)
        self._stopped = asyncio.Event()
        self._schedule(time.monotonic())
        self._log.info("broker_started", endpoints=self.endpoints, workers=self.worker_endpoint)
        for peer in self._peers:
            try:
                self._dialler.dial(peer.node, peer.host, peer.port, None, None)
            except OperoneError as err:
                self._log.error("peer_config_invalid", peer=peer.node, error=str(err))
        self._start_inproc()
        if self._legacy_hosts:
            self._legacy = LegacyRunner(self._legacy_hosts)
            for lh in self._legacy_hosts:
                self.core.add_legacy_host(lh.name, lh.max_concurrency)
            self._after_run(time.monotonic())
        if self._discover:
            await self._discovery.start(self.core)

    async def stop(self) -> None:
        """Answer every job in progress, tell workers, close everything.
        Safe to call twice."""
        pump = self._pump
        if pump is None:
            return
        if self._self_client is not None:
            with contextlib.suppress(Exception):
                await self._self_client.close()
            self._self_client = None
        await self._discovery.stop()
        if self._legacy is not None:
            with contextlib.suppress(Exception):
                await self._legacy.close()
            self._legacy = None
        if self._inproc is not None:
            self._inproc.close()
            self._inproc = None
        self.core.shutdown()
        self._flush(time.monotonic())
        self._pump = None
        self._mesh_events.fail_waiters("the broker stopped")
        self._dialler.stop()
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
    def _on_message(self, idx: int, frames: list[Frame], now: float,
                    uid: str | None = None) -> None:
        if idx <= WORKERS and is_batch(frames, 1):
            # A BATCH's answers and onward messages leave now, batched, not
            # after the whole run: the next hop starts on them while this
            # loop reads on (all in one go, the hops would take turns).
            if idx < WORKERS:
                self.core.on_frontend(idx, frames, now, uid)
            else:
                self.core.on_worker(frames, now)
            self._flush(now)
        elif idx < WORKERS:
            self.core.on_frontend(idx, frames, now, uid)
        elif idx == WORKERS:
            self.core.on_worker(frames, now)
        elif self._dialler.is_monitor(idx):
            self._dialler.on_monitor(idx, frames, now)
        else:
            self.core.on_dealer(idx, frames, now)
            if is_batch(frames):  # a neighbour's BATCH: as one from the frontend
                self._flush(now)
        if self.core.urgent:
            # A PONG: out now, not after the rest of the batch (and SPF),
            # so this loop's work is not in the neighbour's RTT.
            self._flush_urgent()

    def _flush_urgent(self) -> None:
        """Send the core's heartbeats at once and tell it when they left."""
        pump = self._pump
        urgent = self.core.urgent
        self.core.urgent = []
        if pump is None:
            return
        for idx, frames in urgent:
            pump.send(idx, frames)
        self.core.stamp_pings(time.monotonic())

    def core_oversize(self, idx: int, head: list[Frame], nframes: int, nbytes: int,
                      now: float) -> None:
        """A message past the whole-message limits was read and dropped."""
        self.core.on_oversize(idx, head, nframes, nbytes, now)

    def core_unroutable(self, idx: int, frames: list[Frame], now: float) -> None:
        """A send found no such peer: let the core decide what that means."""
        self.core.on_unroutable(idx, frames, now)

    def _flush(self, now: float) -> None:
        pump = self._pump
        if pump is None:
            self.core.out.clear()
            self.core.urgent = []
            return
        if self.core.urgent:
            self._flush_urgent()
        out = self.core.out
        inproc = self._inproc
        send = pump.send
        # Handling an unroutable send (or an in-process tool's answer) may add
        # messages, and answers may start queued in-process jobs: loop until
        # both are empty.
        self._flushing = True
        try:
            while True:
                if inproc is not None and inproc.due:
                    inproc.run_due()
                if not out:
                    break
                # Several messages of this run to one worker or client
                # that accepts BATCH go as one (protocol/batch.py).
                batch = self.core.batched(out[:])
                out.clear()
                for idx, frames in batch:
                    send(idx, frames, now)
        finally:
            self._flushing = False

    def _after_run(self, now: float) -> None:
        if now >= self._timer_at:
            self._tick()
            return
        self.core.poll(now)
        self._flush(now)
        self._emit_events()
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
        # Input that waited while the loop was busy counts before liveness is
        # judged (a PONG in a socket buffer is not silence).
        self._pump.drain()
        now = time.monotonic()
        self.core.tick(now)
        self._flush(now)
        self._emit_events()
        self._schedule(now)

    # ----------------------------------------------------------------- mesh
    def _new_core(self) -> BrokerCore:
        a = self._authority
        return BrokerCore(self.node_id, limits=self._limits, now=time.monotonic(),
                          name=self.name, cluster=self.cluster,
                          public_key=self._keys.public.decode(), authorize=a.authorize,
                          token_factory=a.own_token if a.issues_tokens else None,
                          grants=a.grant, signer=self._signer,
                          signing_keys=a.signing_key_of,
                          grants_by_fingerprint=a.grant_by_fingerprint,
                          trust_snapshot=a.trust_snapshot)

    def generate_jwt(self, subject: str | None = None, ttl: float | None = None) -> str:
        """A token for ``subject`` (default: this node), signed with the cluster's
        jwt_secret and bound to this node's Curve key (the original's generateJWT)."""
        return self._authority.generate_jwt(subject, ttl)

    def on(self, event: str, callback: Callable[..., object]) -> Callable[..., object]:
        """Listen to ``peer:connected``, ``peer:disconnected``, ``message``,
        ``topology:updated``, ``partition:detected``, ``partition:rejoined``,
        ``partition:healed``, ``partition:forgotten``, ``job:rerouted``,
        ``peer:refused``."""
        return self._mesh_events.on(event, callback)

    def _emit_events(self) -> None:
        """Carry out the core's actions, then deliver its events."""
        core = self.core
        if self._mesh_events.awaited_routes:  # (after every run: no call when none waits)
            self._mesh_events.wake_routable(self.is_routable)
        if core.actions:
            actions, core.actions = core.actions, []
            for act in actions:
                if act[0] == "dial":
                    try:
                        self._dialler.dial(act[1], act[2], act[3], None, None)
                    except (OperoneError, RuntimeError) as exc:
                        self._log.error("dial_failed", peer=act[1], error=str(exc))
                        core.events.append(("peer:refused",
                                            {"node": act[1], "reason": str(exc)}))
                elif act[0] == "ssh" and self._legacy is not None:
                    self._legacy.start(act[1], act[2], act[3], act[4], act[5],
                                       self._legacy_done)
                elif act[0] == "ssh-cancel" and self._legacy is not None:
                    self._legacy.cancel(act[2])
        evs = core.events
        if not evs:
            return
        core.events = []
        core.log_events(evs)
        self._mesh_events.deliver(evs)

    def _report(self, name: str, payload: dict[str, Any]) -> None:
        """An event of the shell's own (discovery): logged and delivered as the core's."""
        self.core.events.append((name, payload))
        self._emit_events()

    def _dialled(self) -> None:
        """A dial was made: its HELLO out now, and the timer for its wait."""
        self._flush(time.monotonic())
        self._schedule(time.monotonic())

    async def connect_to_peer(self, host: str, port: int, token: str | None = None, *,
                              node_id: str, public_key: bytes | None = None,
                              timeout: float = CONNECT_TIMEOUT) -> None:
        """Link to the broker ``node_id`` at ``host:port`` (its base port); returns
        once the link is up and authenticated both ways *and* ``node_id`` is
        routable (:meth:`wait_routable`), so a job sent next can use the link.
        Raises NoRoute if that takes longer than ``timeout`` seconds, Refused
        if the peer refuses us.  The link stays configured (and reconnects
        with backoff) until :meth:`disconnect_peer`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        fut = self._mesh_events.expect_link(node_id)
        self._dialler.dial(node_id, host, port, token, public_key)
        link = self.core.links.get(node_id)
        try:
            if link is None or not link.up:
                await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            link = self.core.links.get(node_id)
            why = link.last_error if link is not None and link.last_error else "no answer"
            raise NoRoute(f"could not link to '{node_id}' at {host}:{port} within"
                          f" {timeout:g} s: {why}") from None
        finally:
            self._mesh_events.forget_link_waiter(node_id, fut)
        await self.wait_routable(node_id, max(0.0, deadline - loop.time()))

    def is_routable(self, node_id: str) -> bool:
        """Whether a job to ``node_id`` would be forwarded now: its LSA and ours
        both list the links on a path to it, and the routing table has them."""
        return self.core.routes.next_hop(node_id) is not None

    async def wait_routable(self, node_id: str, timeout: float = CONNECT_TIMEOUT) -> None:
        """Return once :meth:`is_routable` holds for ``node_id`` (at once if it
        does).  A link counts for routing only once both ends have advertised
        it and the route is computed, which takes one LSA exchange after the
        link is up.  Raises NoRoute after ``timeout`` seconds, or when the
        broker stops."""
        if self._pump is None:
            raise NoRoute("the broker is not started")
        await self._mesh_events.until_routable(node_id, timeout, self.is_routable,
                                               self._why_unroutable)

    def _why_unroutable(self, node_id: str, timeout: float) -> str:
        known = self.core.lsdb.knows(node_id)
        return (f"node '{node_id}' is not routable from '{self.node_id}' within {timeout:g} s"
                + (" (it is known but unreachable)" if known
                   else " (no LSA of it has arrived)"))

    async def disconnect_peer(self, node_id: str) -> bool:
        """Close and forget the link to ``node_id``."""
        self.core.remove_link(node_id, time.monotonic())
        self._flush(time.monotonic())  # its BYE, on the sockets about to close
        dialled = self._dialler.forget(node_id)
        self._emit_events()
        return dialled

    # -------------------------------------------------- tools in the broker
    def register_tool(self, func: Callable[..., Any]) -> None:
        """Serve a light tool inside the broker's own process (the original's
        ``tool:remote-request`` handler).  ``func`` is a function (decorated
        with ``@tool`` or not); heavy tools belong in worker processes.  Call
        before :meth:`start`."""
        if self._pump is not None:
            raise RuntimeError("register tools before the broker starts")
        if self._inproc_registry is None:
            self._inproc_registry = ToolRegistry()
        self._inproc_registry.register(func)

    def _start_inproc(self) -> None:
        registry = self._inproc_registry
        if registry is None or not len(registry):
            return
        tools = self._inproc = InprocTools(self.node_id, registry, self._inproc_done)
        self.core.add_virtual_worker(f"{self.node_id[:50]}.inproc", tools.names, tools.run,
                                     tools.stop, pid=os.getpid())
        self._flush(time.monotonic())

    def _inproc_done(self, jid: str, value: Any, error: Any, duration: float) -> None:
        """An in-process tool finished: inline ones inside :meth:`_flush` (whose
        loop sends the answer), the others from a done callback."""
        now = time.monotonic()
        self.core.virtual_done(jid, value, error, duration, now)
        if not self._flushing:
            self._after_run(now)

    def _legacy_done(self, jid: str, value: Any, error: Any, duration: float) -> None:
        now = time.monotonic()
        self.core.legacy_done(jid, value, error, duration, now)
        self._after_run(now)

    # ------------------------------------------------------------ discovery
    def discovered_peers(self) -> list[dict[str, Any]]:
        """What zeroconf currently sees (empty when discovery is off)."""
        return self._discovery.peers()

    def get_connected_peers(self) -> list[dict[str, Any]]:
        """Neighbours whose link is up (the original's getConnectedPeers)."""
        now = time.monotonic()
        return [lk.describe(now) for lk in self.core.links.values() if lk.up]

    def get_qos_metrics(self, peer_id: str) -> dict[str, Any] | None:
        """QoS of the link to ``peer_id``: latency, jitter, loss, bandwidth,
        queue depth, health 0-100 (the original's getQoSMetrics)."""
        return self.core.qos_metrics(peer_id)

    def allocate_bandwidth(self, peer_id: str, mb_per_s: float | None) -> None:
        """Limit what this broker sends to neighbour ``peer_id`` (MB/s; None: no limit)."""
        self.core.allocate_bandwidth(peer_id, mb_per_s)
        self._schedule(time.monotonic())

    @property
    def qos(self) -> Any:
        """The QoSManager of this broker (policies, metrics, allocations)."""
        return self.core.qos

    def get_network_stats(self) -> dict[str, Any]:
        """Statistics of the whole mesh as this node sees it."""
        return self.core.network_stats()

    def get_topology_graph(self) -> dict[str, Any]:
        """Nodes and edges of the link-state graph."""
        return self.core.topology_graph()

    def find_route(self, dest: str) -> dict[str, Any]:
        """The route to ``dest``: path, hops, latency, bandwidth, reliability."""
        return self.core.route_info(dest)

    @property
    def topology(self) -> Any:
        """The mesh as a :class:`~operone_zmq.routing.topology.NetworkTopology`
        (the original's API: find_route, get_network_stats, get_topology_graph
        with to_json / to_dot, discover_peers, events)."""
        return self.core.topology

    async def _client(self) -> Any:
        if self._self_client is None:
            from .client import AsyncClient

            c = AsyncClient("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host,
                            self.base_port,
                            keys=CurveKeys(self._keys.public, self._keys.secret,
                                           self._keys.public),
                            client_id=f"{self.node_id}.self")
            await c.connect()
            self._self_client = c
        return self._self_client

    async def broadcast(self, message: Any) -> int:
        """Send ``message`` to every node of the mesh (each gets it once, as a
        ``message`` event); returns how many neighbours it was sent to."""
        c = await self._client()
        n: int = await c.broadcast(message)
        return n

    async def execute_remote_tool(self, peer_id: str, tool: str,
                                  args: dict[str, Any] | None = None,
                                  timeout: float | None = None) -> Any:
        """Run ``tool`` on node ``peer_id`` (any number of hops away) and return
        its value (the original's executeRemoteTool)."""
        c = await self._client()
        return await c.run(tool, args or {}, on=peer_id, timeout=timeout)

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
            s["dropped_replies"] = pump.dropped_full
        return s
