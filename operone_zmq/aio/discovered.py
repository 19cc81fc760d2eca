"""Linking to the brokers zeroconf discovers (``node.discover``).

:class:`~operone_zmq.aio.discovery.Discovery` announces this broker and finds
the others of its cluster; :class:`DiscoveredPeers` decides what to do with
each one found:

* its key is trusted under the node id it announces: dial it (when both
  sides see each other, the smaller node id dials, so there is one link, not
  two), unless the link is up already;
* otherwise: add it to the trust store's pending list (``operone keys
  pending`` shows it, ``operone keys accept NODE`` trusts it) and report
  ``discovery:pending``;
* every :data:`DISCOVERY_RECHECK` seconds the peers seen are looked at again,
  so one whose key an operator accepted since is linked without a restart;
* one that is gone is reported as ``discovery:lost``.

Discovery never trusts anything by itself: a key becomes trusted only by an
operator (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ..core.broker import BrokerCore
from ..errors import OperoneError
from .authority import KeyChecker
from .dialler import Dialler

__all__ = ["DISCOVERY_RECHECK", "DiscoveredPeers"]

#: Seconds between checks whether a discovered broker's key was accepted
#: since (then it is linked without a restart).
DISCOVERY_RECHECK = 2.0

#: Hosts a broker bound to only reaches itself on: discovery then announces
#: an address no other PC can link to.
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class DiscoveredPeers:
    """Announces this broker and links to the trusted brokers it finds."""

    def __init__(self, node_id: str, *, cluster: str, host: str, port: int,
                 public_key: str, name: str, trust: KeyChecker, dialler: Dialler,
                 report: Callable[[str, dict[str, Any]], None], log: Any) -> None:
        """``report(event, payload)``: an event for the broker's listeners."""
        self._node_id = node_id
        self._cluster = cluster
        self._host = host
        self._port = port
        self._public_key = public_key
        self._name = name
        self._trust = trust
        self._dialler = dialler
        self._report = report
        self._log = log
        self._core: BrokerCore | None = None
        self._discovery: Any = None
        self._recheck: asyncio.Task[None] | None = None

    async def start(self, core: BrokerCore) -> None:
        """Announce this broker and start looking (``core``: the running one)."""
        from .discovery import Discovery

        self._core = core
        if self._host in _LOOPBACK:
            self._log.warning("discovery_on_loopback",
                              hint="the broker binds loopback only; set node.host to an"
                                   " interface address or 0.0.0.0 for other PCs to link")
        d = Discovery(self._node_id, cluster=self._cluster, port=self._port,
                      public_key=self._public_key, name=self._name, bind_host=self._host,
                      on_found=self._on_found, on_lost=self._on_lost)
        await d.start()
        self._discovery = d
        self._recheck = asyncio.get_running_loop().create_task(self._recheck_loop())
        self._log.info("discovery_started", addresses=list(d.advertised_addresses))

    async def stop(self) -> None:
        """Stop looking and withdraw the announcement.  Safe to call twice."""
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recheck
            self._recheck = None
        if self._discovery is not None:
            with contextlib.suppress(Exception):
                await self._discovery.stop()
            self._discovery = None
        self._core = None

    def _trusted(self, peer: Any) -> bool:
        return bool(self._trust.name_of(peer.public_key.encode("ascii")) == peer.node)

    def _on_found(self, peer: Any) -> None:
        """zeroconf found a broker of our cluster: link to it when its key is
        trusted under its node id; otherwise list it as pending."""
        core = self._core
        if core is None:
            return
        key = peer.public_key.encode("ascii")
        if self._trusted(peer):
            link = core.links.get(peer.node)
            if link is not None and link.up:
                return
            # Both sides see each other: the smaller id dials (one link, not two).
            if self._node_id < peer.node or peer.node not in core.links:
                self._log.info("discovered_peer", peer=peer.node, address=peer.address)
                try:
                    self._dialler.dial(peer.node, peer.host, peer.port, None, key)
                except (OperoneError, RuntimeError) as err:
                    self._log.warning("discovered_dial_failed", peer=peer.node, error=str(err))
            return
        try:
            self._trust.add_pending(peer.node, key,
                                    source=f"discovered at {peer.host}:{peer.port}")
            self._log.info("discovered_untrusted", peer=peer.node, address=peer.address,
                           hint=f"operone keys accept {peer.node}")
        except OperoneError as exc:
            self._log.warning("discovery_pending_refused", peer=peer.node, error=str(exc))
        self._report("discovery:pending", {"node": peer.node, "address": peer.address})

    async def _recheck_loop(self) -> None:
        """Link to discovered brokers whose key an operator accepted since
        (``operone keys accept NODE``): no restart needed."""
        while True:
            await asyncio.sleep(DISCOVERY_RECHECK)
            d, core = self._discovery, self._core
            if d is None or core is None:
                return
            for peer in d.peers():
                try:
                    if self._trusted(peer) and peer.node not in core.links:
                        self._on_found(peer)
                except Exception as exc:  # one odd record must not end the rechecks
                    self._log.warning("discovery_recheck_failed", peer=peer.node,
                                      error=str(exc))

    def _on_lost(self, node: str) -> None:
        self._log.info("discovery_lost", peer=node)
        self._report("discovery:lost", {"node": node})

    def peers(self) -> list[dict[str, Any]]:
        """What zeroconf currently sees (empty when not started)."""
        if self._discovery is None:
            return []
        return [{"node": p.node, "address": p.address, "fingerprint": p.fingerprint,
                 "trusted": self._trusted(p)} for p in self._discovery.peers()]
