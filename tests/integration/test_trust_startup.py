"""Trust at start-up and the default shell policy, with real brokers, workers and clients."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest
import zmq
from helpers import MeshOfNodes, local_node

from operone_zmq.aio.client import AsyncClient
from operone_zmq.aio.sockets import CurveKeys
from operone_zmq.errors import OperoneError
from operone_zmq.security import TrustStore, load_keypair

#: Trusted clients per broker that knock the moment it binds.
CLIENTS_PER_NODE = 25


def _port_below_ephemeral(span: int = 4) -> int:
    """A free base port below the kernel's ephemeral range: a client that keeps
    reconnecting to a port nobody listens on can otherwise TCP-self-connect
    (source port = destination port) and hold the broker's port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        base = random.randrange(10_000, max(10_001, low - span))
        try:
            for i in range(span):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range below the ephemeral range")


def test_trusted_peers_and_clients_are_served_right_after_a_restart(tmp_path: Path) -> None:
    """Issue 9 item 2: brokers that dial their configured peers right after
    binding, and trusted clients already knocking when they bind, are all
    admitted, at the first start and after a restart (a refusal is permanent:
    libzmq does not retry after an authentication failure)."""
    names = ["a", "b", "c"]
    m = MeshOfNodes(tmp_path, names)
    for node in m.nodes.values():
        node.base_port = _port_below_ephemeral()
        node.env["OPERONE_NODE_BASE_PORT"] = str(node.base_port)
    pairs = [zmq.curve_keypair() for _ in range(CLIENTS_PER_NODE)]
    for node in m.nodes.values():
        store = TrustStore(node.home.trust_dir)
        for i, (public, _) in enumerate(pairs):
            store.accept(f"client{i}", public)
    server = {n: load_keypair(m[n].home.node_public).public for n in names}
    links = [("a", "b"), ("b", "c"), ("c", "a")]

    async def round_trip() -> list[str]:
        clients = [await AsyncClient("127.0.0.1", m[n].base_port,
                                     keys=CurveKeys(pub, sec, server[n])).connect()
                   for n in names for pub, sec in pairs]
        try:
            # The pings are queued before any broker binds: every handshake
            # starts the moment its broker is up.
            pings = [asyncio.ensure_future(c.ping(timeout=60)) for c in clients]
            await asyncio.to_thread(m.start, links)
            results = await asyncio.gather(*pings, return_exceptions=True)
            return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
        finally:
            for c in clients:
                await c.close()

    try:
        for attempt in ("start", "restart"):
            failed = asyncio.run(round_trip())
            assert not failed, f"{attempt}: {len(failed)} trusted clients refused: {failed[:3]}"
            m.wait_converged(timeout=30)
            m.stop()
    finally:
        m.stop()


def test_default_shell_policy_does_not_hand_out_the_node_key(tmp_path: Path) -> None:
    """Issue 9 item 8: with the default config, a trusted client cannot read
    keys/node.key_secret through `shell` (nothing is allowed), nor through fs.*
    (no fs_root)."""
    with local_node(tmp_path) as node:
        node.start_broker()
        node.start_worker()
        node.wait_workers(1)
        secret = str(node.home.node_secret)
        with node.client() as c:
            for argv in (["cat", secret], ["ls", str(node.home.keys_dir)],
                         ["hostname", "pwned"], ["date", "-s", "2000-01-01"]):
                with pytest.raises(OperoneError, match="not in this node's shell allow-list"):
                    c.run("shell", {"argv": argv}, retries=0, timeout=20)
            with pytest.raises(OperoneError, match="disabled"):
                c.run("fs.read", {"path": secret}, retries=0, timeout=20)
