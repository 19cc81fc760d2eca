"""Zero-config discovery of brokers on the local network (mDNS / DNS-SD).

Each broker advertises one service instance ``<node_id>._operone._tcp.local.``
whose SRV record carries its base port and whose TXT record carries::

    node=<node id>  cluster=<cluster>  port=<base port>  key=<Z85 Curve key>
    fp=<key fingerprint>  name=<display name>  v=1

and browses for the others with python-zeroconf's asyncio API
(:class:`~zeroconf.asyncio.AsyncZeroconf`, :class:`~zeroconf.asyncio.AsyncServiceBrowser`,
:class:`~zeroconf.asyncio.AsyncServiceInfo`).  Every handler, resolution and
callback runs on the event loop thread.

Discovery is a hint, never a credential: anyone on the link can announce
anything.  Every TXT field is validated strictly (a bad record is ignored
and counted, never raised), and a discovered key means nothing until the
broker finds it trusted *under the announced node id*; the CurveZMQ
handshake then proves the peer holds that key.  Untrusted ones belong in the
trust store's pending list for an operator to review.

A peer is reported lost when its service is removed: at once when it sends
goodbye packets (:meth:`Discovery.stop`, and python-zeroconf on close), or
when its records expire.  python-zeroconf holds browsed PTR records for at
least 1125 s whatever TTL is announced, so a node that crashes without a
goodbye is reported lost that much later; peer links notice a crash within
their heartbeat timeout anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import ifaddr
import structlog
from zeroconf import (
    BadTypeInNameException,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ..errors import ConfigError
from ..protocol.limits import MAX_PEER_BASE_PORT
from ..security.keys import NAME_PATTERN, fingerprint, parse_public_key

__all__ = [
    "MAX_DISCOVERED",
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "DiscoveredPeer",
    "Discovery",
    "InvalidRecord",
    "browse",
    "default_addresses",
]

log = structlog.get_logger("operone.discovery")

#: The DNS-SD service type every operone broker advertises.
SERVICE_TYPE = "_operone._tcp.local."

#: The version of the TXT record layout (the ``v`` field).  Records of any
#: other version are ignored (and counted as invalid): a later layout may
#: change what the fields mean.
PROTOCOL_VERSION = 1

#: At most this many services are tracked (and queued for resolution) at
#: once.  Every announcement is unauthenticated multicast: anyone on the link
#: can announce thousands of instances, and each would cost memory, a
#: resolution and a callback (which may write a pending-key file).  A real
#: mesh on one link is far smaller; past the bound, new services are ignored
#: and counted (``dropped``) until known ones go away.
MAX_DISCOVERED = 1024

#: Resolutions in flight at once; the rest wait their turn.
MAX_CONCURRENT_RESOLVES = 16

#: Seconds one resolution (SRV, TXT and address queries) may take.
RESOLVE_TIMEOUT = 3.0

#: Seconds stop() waits for the goodbye packets and the sockets to close.
STOP_TIMEOUT = 5.0

#: Longest display name (characters) announced or accepted.
MAX_NAME_CHARS = 64

#: ... and at most this many bytes of UTF-8 (a TXT string holds 255 bytes).
_MAX_NAME_BYTES = 200

#: A DNS label (the instance name) holds at most 63 bytes.
_MAX_LABEL_BYTES = 63

_NAME_RE = re.compile(NAME_PATTERN)
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_VERSION_RE = re.compile(r"[1-9][0-9]{0,2}")
_FP_RE = re.compile(r"[0-9a-f]{16}")
_KEY_LEN = 40
#: Local networks (for choosing a peer's address) are re-read at most this often.
_LOCAL_NETS_TTL = 5.0

FoundCallback = Callable[["DiscoveredPeer"], None]
LostCallback = Callable[[str], None]
Interfaces = list[str] | list[str | int] | InterfaceChoice


class InvalidRecord(ValueError):
    """A discovered service record that does not describe a broker we could use."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name


# ------------------------------------------------------------------- records
@dataclass(frozen=True)
class DiscoveredPeer:
    """A broker announced on the local network (validated, not yet trusted)."""

    node: str
    cluster: str
    #: The address to dial (one of ``addresses``, preferring our own subnets).
    host: str
    #: The broker's base port (it listens on port .. port + 3).
    port: int
    #: Its Curve public key, 40 Z85 characters.
    public_key: str
    fingerprint: str
    name: str
    version: int
    #: Every usable address the service announced.
    addresses: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """``NODE@HOST:PORT`` as ``--peer`` and :meth:`PeerAddress.parse` take it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.node}@{host}:{self.port}"

    @classmethod
    def from_record(
        cls,
        service_name: str,
        properties: Mapping[bytes, bytes | None],
        addresses: Sequence[str],
        srv_port: int | None = None,
        *,
        local_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    ) -> DiscoveredPeer:
        """Validate a resolved service and return the peer it announces.

        ``properties`` is the TXT record (as ``ServiceInfo.properties``),
        ``addresses`` its A/AAAA records as text, ``srv_port`` the SRV port
        (it must equal the TXT ``port``).  Raises :class:`InvalidRecord`.
        """
        if not service_name.lower().endswith("." + SERVICE_TYPE):
            raise InvalidRecord("name", "not an operone service instance")
        node = _ascii_field(properties, "node")
        if not _NAME_RE.fullmatch(node) or len(node) > _MAX_LABEL_BYTES:
            raise InvalidRecord("node", "not a valid node id")
        cluster = _ascii_field(properties, "cluster")
        if not _NAME_RE.fullmatch(cluster):
            raise InvalidRecord("cluster", "not a valid cluster name")
        version_text = _ascii_field(properties, "v")
        if not _VERSION_RE.fullmatch(version_text):
            raise InvalidRecord("v", "not a version number")
        version = int(version_text)
        if version != PROTOCOL_VERSION:
            raise InvalidRecord("v", f"unsupported record version {version}")
        port_text = _ascii_field(properties, "port")
        if not _PORT_RE.fullmatch(port_text) or int(port_text) > MAX_PEER_BASE_PORT:
            raise InvalidRecord("port", f"not a base port (1-{MAX_PEER_BASE_PORT})")
        port = int(port_text)
        if srv_port is not None and srv_port != port:
            raise InvalidRecord("port", "the SRV port differs from the TXT port")
        key = _ascii_field(properties, "key")
        if len(key) != _KEY_LEN:
            raise InvalidRecord("key", "not a 40-character Z85 Curve key")
        try:
            parse_public_key(key.encode("ascii"))  # bytes: never a file path
        except ConfigError:
            raise InvalidRecord("key", "not a valid Z85 Curve key") from None
        fp = _ascii_field(properties, "fp")
        if not _FP_RE.fullmatch(fp) or fp != fingerprint(key.encode("ascii")):
            raise InvalidRecord("fp", "does not match the key")
        name = _text_field(properties, "name")
        if len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise InvalidRecord("name", f"not printable text of at most {MAX_NAME_CHARS} chars")
        usable = _usable_addresses(addresses)
        if not usable:
            raise InvalidRecord("addresses", "no usable address")
        host = _pick_host(usable, local_networks)
        return cls(node, cluster, host, port, key, fp, name, version, tuple(usable))


def _raw_field(properties: Mapping[bytes, bytes | None], key: str) -> bytes:
    value = properties.get(key.encode("ascii"))
    if value is None:
        raise InvalidRecord(key, "missing")
    if len(value) > 255:  # cannot come from one TXT string; never trust it anyway
        raise InvalidRecord(key, "too long")
    return value


def _ascii_field(properties: Mapping[bytes, bytes | None], key: str) -> str:
    value = _raw_field(properties, key)
    if not value.isascii():
        raise InvalidRecord(key, "not ASCII")
    return value.decode("ascii")


def _text_field(properties: Mapping[bytes, bytes | None], key: str) -> str:
    try:
        return _raw_field(properties, key).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord(key, "not UTF-8") from None


def _usable_addresses(addresses: Iterable[str]) -> list[str]:
    """The unicast addresses a broker could be dialled at, IPv4 first, in order.

    IPv6 link-local addresses are left out: they need a scope (an interface
    of ours) that a TCP endpoint string cannot carry portably.
    """
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast or (ip.is_link_local and ip.version == 6):
            continue
        out = v4 if ip.version == 4 else v6
        if str(ip) not in out:
            out.append(str(ip))
    return v4 + v6


def _pick_host(
    addresses: Sequence[str],
    local_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str:
    """The address to dial: one on a subnet of ours if any, not loopback if
    possible (a loopback address is only right for a node on this machine)."""

    def rank(text: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(text)
        on_link = any(ip in net for net in local_networks if net.version == ip.version)
        return (0 if on_link and not ip.is_loopback else 1 if not ip.is_loopback else 2,
                addresses.index(text))

    return min(addresses, key=rank)


# ---------------------------------------------------------- local addresses
def _adapter_ips(version: IPVersion) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """This machine's interface addresses (with their prefix) of the IP version(s)."""
    out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                if version == IPVersion.V4Only:
                    continue
                iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface = (
                    ipaddress.IPv6Interface(f"{ip.ip[0]}/{ip.network_prefix}"))
            else:
                if version == IPVersion.V6Only:
                    continue
                iface = ipaddress.IPv4Interface(f"{ip.ip}/{ip.network_prefix}")
            out.append(iface)
    return out


def _local_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [iface.network for iface in _adapter_ips(IPVersion.All)]
    except (OSError, ValueError):
        return []


def _effective_ip_version(interfaces: Interfaces, ip_version: IPVersion | None) -> IPVersion:
    """The IP version(s) zeroconf will use, as it decides them itself."""
    if ip_version is not None:
        return ip_version
    if isinstance(interfaces, list):
        v6 = any(isinstance(i, int) or ipaddress.ip_address(i).version == 6 for i in interfaces)
        v4 = any(isinstance(i, str) and ipaddress.ip_address(i).version == 4
                 for i in interfaces)
        return IPVersion.All if v4 and v6 else IPVersion.V6Only if v6 else IPVersion.V4Only
    return IPVersion.V4Only


def default_addresses(
    interfaces: Interfaces = InterfaceChoice.All,
    ip_version: IPVersion | None = None,
    bind_host: str | None = None,
) -> list[str]:
    """The addresses to advertise when none are given.

    The broker's bind host when it is a concrete address; else the addresses
    in ``interfaces`` when that is a list; else every non-loopback address
    of this machine (of the IP version in use, IPv6 link-local left out).
    """
    if bind_host:
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(bind_host.strip("[]"))
            if not ip.is_unspecified:
                return [str(ip)]
    if isinstance(interfaces, list):
        listed = _usable_addresses(i for i in interfaces if isinstance(i, str))
        if listed:
            return listed
    version = _effective_ip_version(interfaces, ip_version)
    found = _usable_addresses(
        str(iface.ip) for iface in _adapter_ips(version) if not iface.ip.is_loopback)
    if not found:
        raise ConfigError("no network address to advertise for discovery: give addresses=[...]")
    return found


# ------------------------------------------------------------------ tracker
class _Tracker:
    """Browses the service type, resolves what appears, keeps the valid peers.

    Keyed by service instance (lowercase, as DNS compares names): two
    instances may claim the same node id (a spoof, or a restart under a new
    instance name); both are reported, and the broker's trust check decides.
    The node is reported lost once no instance claims it any more.
    """

    def __init__(
        self,
        zc: Zeroconf,
        *,
        own_node: str | None,
        own_service: Callable[[], str | None],
        cluster: str | None,
        on_found: FoundCallback | None,
        on_lost: LostCallback | None,
        resolve_timeout: float = RESOLVE_TIMEOUT,
    ) -> None:
        self._zc = zc
        self._own_node = own_node
        self._own_service = own_service
        self._cluster = cluster
        self._on_found = on_found
        self._on_lost = on_lost
        self._resolve_timeout = resolve_timeout
        self._services: dict[str, DiscoveredPeer] = {}
        #: One resolving task per service name at most; names in ``_dirty``
        #: changed again meanwhile and are resolved once more by that task.
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        #: Services skipped (invalid, other cluster, our node id) -> a digest of
        #: the record, so that each record is counted once; oldest first, bounded.
        self._rejected: dict[str, bytes] = {}
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_RESOLVES)
        self._nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._nets_at = float("-inf")
        self._browser: AsyncServiceBrowser | None = None
        self.counters = {"found": 0, "updated": 0, "lost": 0, "invalid": 0,
                         "other_cluster": 0, "self": 0, "dropped": 0, "resolve_failed": 0,
                         "callback_errors": 0, "errors": 0}

    def start(self) -> None:
        self._browser = AsyncServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._on_change])

    async def stop(self) -> None:
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.async_cancel()
        tasks = list(self._workers.values())
        self._workers.clear()
        self._dirty.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def peers(self) -> list[DiscoveredPeer]:
        return sorted(self._services.values(), key=lambda p: (p.node, p.fingerprint))

    async def drain(self) -> None:
        """Until no resolution is running (the caller bounds the wait)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    # ------------------------------------------------------------ events
    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        """AsyncServiceBrowser handler: runs on the event loop, must not block."""
        if self._browser is None or service_type != SERVICE_TYPE:
            return
        key = name.lower()
        own = self._own_service()
        if own is not None and key == own.lower():
            return
        if state_change is ServiceStateChange.Removed:
            worker = self._workers.pop(key, None)
            if worker is not None:
                worker.cancel()
            self._dirty.discard(key)
            self._rejected.pop(key, None)
            self._forget(key)
            return
        if key in self._workers:
            self._dirty.add(key)
            return
        if key not in self._services and len(self._services) + len(
                self._workers) >= MAX_DISCOVERED:
            self.counters["dropped"] += 1
            return
        task = asyncio.get_running_loop().create_task(self._worker(key, name))
        self._workers[key] = task

    async def _worker(self, key: str, name: str) -> None:
        try:
            async with self._sem:
                while True:
                    self._dirty.discard(key)
                    await self._resolve(key, name)
                    if key not in self._dirty:
                        return
        except Exception:  # a bug here must not end discovery; CancelledError passes
            self.counters["errors"] += 1
            log.exception("discovery_resolve_failed", service=name)
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]

    async def _resolve(self, key: str, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            ok = await info.async_request(self._zc, self._resolve_timeout * 1000)
        except (BadTypeInNameException, ValueError, OSError) as exc:
            log.debug("discovery_resolve_error", service=name, error=str(exc))
            ok = False
        if not ok:
            self.counters["resolve_failed"] += 1
            return
        properties, addresses = info.properties, info.parsed_addresses()
        signature = hashlib.sha256(
            repr((sorted(properties.items()), sorted(addresses), info.port)).encode()).digest()
        try:
            if info.port is None:
                raise InvalidRecord("port", "no SRV record")
            peer = DiscoveredPeer.from_record(name, properties, addresses, info.port,
                                              local_networks=self._local_networks())
        except InvalidRecord as exc:
            if self._reject(key, "invalid", signature):
                log.debug("discovery_invalid_record", service=name, field=exc.field,
                          reason=str(exc))
            return
        self._accept(key, peer, signature)

    def _local_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        now = time.monotonic()
        if now - self._nets_at > _LOCAL_NETS_TTL:
            self._nets, self._nets_at = _local_networks(), now
        return self._nets

    def _reject(self, key: str, counter: str, signature: bytes) -> bool:
        """Drop the service ``key``; count it unless this very record was counted
        already (records are re-announced and re-resolved).  True if counted."""
        self._forget(key)
        if self._rejected.get(key) == signature:
            return False
        self._rejected.pop(key, None)
        if len(self._rejected) >= MAX_DISCOVERED:
            del self._rejected[next(iter(self._rejected))]  # the oldest
        self._rejected[key] = signature
        self.counters[counter] += 1
        return True

    def _accept(self, key: str, peer: DiscoveredPeer, signature: bytes) -> None:
        if self._own_node is not None and peer.node == self._own_node:
            self._reject(key, "self", signature)
            return
        if self._cluster is not None and peer.cluster != self._cluster:
            self._reject(key, "other_cluster", signature)
            return
        self._rejected.pop(key, None)
        old = self._services.get(key)
        if old == peer:
            return
        if old is None and len(self._services) >= MAX_DISCOVERED:
            self.counters["dropped"] += 1
            return
        self._services[key] = peer
        if old is not None and old.node != peer.node:
            self._report_lost_if_gone(old.node)
        self.counters["updated" if old is not None else "found"] += 1
        if self._on_found is not None:
            try:
                self._on_found(peer)
            except Exception:
                self.counters["callback_errors"] += 1
                log.exception("discovery_callback_failed", callback="on_found", node=peer.node)

    def _forget(self, key: str) -> None:
        old = self._services.pop(key, None)
        if old is not None:
            self._report_lost_if_gone(old.node)

    def _report_lost_if_gone(self, node: str) -> None:
        if any(p.node == node for p in self._services.values()):
            return
        self.counters["lost"] += 1
        if self._on_lost is not None:
            try:
                self._on_lost(node)
            except Exception:
                self.counters["callback_errors"] += 1
                log.exception("discovery_callback_failed", callback="on_lost", node=node)


# ------------------------------------------------------------ the service
def _open_zeroconf(interfaces: Interfaces, ip_version: IPVersion | None) -> AsyncZeroconf:
    try:
        return AsyncZeroconf(interfaces=interfaces, ip_version=ip_version)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot start mDNS discovery on {interfaces!r}: {exc}") from exc


class Discovery:
    """Advertise this broker with mDNS/DNS-SD and report the others of its cluster.

    ``on_found(peer)`` is called on the event loop thread for every valid
    peer of the same cluster when it appears and again when its record
    changes (new address, key or port); ``on_lost(node_id)`` when no service
    announces that node any more.  Services of this node id and of other
    clusters are skipped; invalid records are counted (:meth:`stats`).
    """

    def __init__(
        self,
        node_id: str,
        *,
        cluster: str,
        port: int,
        public_key: str,
        name: str = "",
        addresses: list[str] | None = None,
        interfaces: Interfaces = InterfaceChoice.All,
        on_found: FoundCallback | None = None,
        on_lost: LostCallback | None = None,
        ip_version: IPVersion | None = None,
        bind_host: str | None = None,
        resolve_timeout: float = RESOLVE_TIMEOUT,
    ) -> None:
        """``addresses``: the IPs to advertise; by default ``bind_host`` (the
        broker's) when it is a concrete address, else see :func:`default_addresses`.
        ``interfaces`` and ``ip_version`` go to :class:`AsyncZeroconf` as they are.
        """
        if not isinstance(node_id, str) or not _NAME_RE.fullmatch(node_id):
            raise ConfigError(f"invalid node id {node_id!r} for discovery")
        if len(node_id.encode()) > _MAX_LABEL_BYTES:
            raise ConfigError(f"node id {node_id!r} is too long for mDNS (at most 63 bytes)")
        if not isinstance(cluster, str) or not _NAME_RE.fullmatch(cluster):
            raise ConfigError(f"invalid cluster name {cluster!r} for discovery")
        if (isinstance(port, bool) or not isinstance(port, int)
                or not 1 <= port <= MAX_PEER_BASE_PORT):
            raise ConfigError(f"invalid base port {port!r} for discovery")
        key = public_key.strip() if isinstance(public_key, str) else ""
        if len(key) != _KEY_LEN or not key.isascii():
            raise ConfigError("discovery needs the node's public key as 40 Z85 characters")
        parse_public_key(key.encode("ascii"))
        # The display name is only informative: made printable and short
        # enough (receivers refuse anything else) rather than refused.
        name = "".join(c if c.isprintable() else "?" for c in (name or node_id))
        name = name[:MAX_NAME_CHARS].encode()[:_MAX_NAME_BYTES].decode(errors="ignore")
        if addresses is not None:
            usable = _usable_addresses(addresses)
            if len(usable) != len(set(addresses)):
                raise ConfigError(f"cannot advertise {addresses!r}: give unicast IP addresses"
                                  " (no IPv6 link-local)")
            addresses = usable
        if isinstance(interfaces, list):
            for iface in interfaces:
                if isinstance(iface, str):
                    try:
                        ipaddress.ip_address(iface)
                    except ValueError:
                        raise ConfigError(f"discovery interface {iface!r} is not an IP address"
                                          ) from None
                elif isinstance(iface, bool) or not isinstance(iface, int):
                    raise ConfigError(f"discovery interface {iface!r}: give IP addresses"
                                      " (or IPv6 interface indexes)")
        elif not isinstance(interfaces, InterfaceChoice):
            raise ConfigError("interfaces must be a list of addresses or an InterfaceChoice")
        if not 0 < resolve_timeout <= 60:
            raise ConfigError("resolve_timeout must be in (0, 60] seconds")
        self.node_id = node_id
        self.cluster = cluster
        self.port = port
        self.public_key = key
        self.fingerprint = fingerprint(key.encode("ascii"))
        self.name = name
        self._addresses = addresses
        self._bind_host = bind_host
        self._interfaces = interfaces
        self._ip_version = ip_version
        self._on_found = on_found
        self._on_lost = on_lost
        self._resolve_timeout = resolve_timeout
        self._aiozc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._tracker: _Tracker | None = None
        self._started = False
        self._registered = False
        self._stopped = False

    @property
    def properties(self) -> dict[str, str]:
        """The TXT record this node announces."""
        return {"node": self.node_id, "cluster": self.cluster, "port": str(self.port),
                "key": self.public_key, "fp": self.fingerprint, "name": self.name,
                "v": str(PROTOCOL_VERSION)}

    @property
    def service_name(self) -> str | None:
        """The instance name registered (``<node_id>._operone._tcp.local.``,
        ``<node_id>-2...`` if another responder holds that name), None before start()."""
        return self._info.name if self._info is not None else None

    @property
    def advertised_addresses(self) -> list[str]:
        """The addresses announced (after start())."""
        return self._info.parsed_addresses() if self._info is not None else []

    def _host_name(self) -> str:
        """The SRV target: ours alone (two nodes sharing a host name would
        share its address records), and the same after a restart."""
        digest = hashlib.sha256(
            f"{self.node_id}\0{self.cluster}\0{self.public_key}".encode()).hexdigest()
        return f"opz-{digest[:16]}.local."

    async def start(self) -> None:
        """Register this node's service and start browsing for the others.

        Returns once the service is announced (probing takes about a second).
        Raises :class:`ConfigError` if mDNS cannot run on the interfaces.
        """
        if self._started or self._stopped:
            raise RuntimeError("Discovery.start() may be called once, before stop()")
        self._started = True
        addresses = self._addresses or default_addresses(
            self._interfaces, self._ip_version, self._bind_host)
        info = AsyncServiceInfo(
            SERVICE_TYPE, f"{self.node_id}.{SERVICE_TYPE}", port=self.port,
            properties=self.properties, server=self._host_name(),
            parsed_addresses=addresses)
        aiozc = _open_zeroconf(self._interfaces, self._ip_version)
        self._aiozc = aiozc
        self._tracker = _Tracker(
            aiozc.zeroconf, own_node=self.node_id, own_service=lambda: self.service_name,
            cluster=self.cluster, on_found=self._on_found, on_lost=self._on_lost,
            resolve_timeout=self._resolve_timeout)
        self._info = info
        try:
            # Browse while our own name is probed (about a second).
            self._tracker.start()
            # Another cluster may use the same node id: let zeroconf pick
            # "<node_id>-2" then; the TXT node field is what counts.
            announced = await aiozc.async_register_service(info, allow_name_change=True)
            self._registered = True
            await announced
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, (NonUniqueNameException, BadTypeInNameException)):
                raise ConfigError(f"cannot register {info.name!r} for discovery: {exc!r}"
                                  ) from exc
            raise
        log.info("discovery_started", node=self.node_id, cluster=self.cluster,
                 service=info.name, addresses=addresses)

    def peers(self) -> list[DiscoveredPeer]:
        """The valid peers of this cluster known now (sorted by node id)."""
        return self._tracker.peers() if self._tracker is not None else []

    def stats(self) -> dict[str, int]:
        """Counters: found, updated, lost, invalid, other_cluster, self (records
        skipped as ours), dropped (past MAX_DISCOVERED), resolve_failed,
        callback_errors, errors, and ``known`` (peers now).  Each skipped record
        is counted once however often it is re-announced."""
        if self._tracker is None:
            return {}
        return {**self._tracker.counters, "known": len(self._tracker.peers())}

    async def stop(self) -> None:
        """Unregister (goodbye packets) and close; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        tracker, aiozc, info = self._tracker, self._aiozc, self._info
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                if tracker is not None:
                    await tracker.stop()
                if aiozc is not None and info is not None and self._registered:
                    with contextlib.suppress(Exception):
                        await (await aiozc.async_unregister_service(info))  # goodbyes
        except TimeoutError:
            log.warning("discovery_stop_timeout", node=self.node_id, phase="goodbye")
        if aiozc is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await aiozc.async_close()
            except TimeoutError:
                log.warning("discovery_stop_timeout", node=self.node_id, phase="close")

    async def __aenter__(self) -> Discovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def browse(
    timeout: float = 3.0,
    *,
    interfaces: Interfaces = InterfaceChoice.All,
    cluster: str | None = None,
    ip_version: IPVersion | None = None,
) -> list[DiscoveredPeer]:
    """Listen for ``timeout`` seconds and return the valid brokers announced
    (of ``cluster`` only, if given), sorted by node id: ``operone discover``."""
    if not 0 < timeout <= 600:
        raise ConfigError("browse timeout must be in (0, 600] seconds")
    if cluster is not None and not _NAME_RE.fullmatch(cluster):
        raise ConfigError(f"invalid cluster name {cluster!r}")
    aiozc = _open_zeroconf(interfaces, ip_version)
    tracker = _Tracker(aiozc.zeroconf, own_node=None, own_service=lambda: None,
                       cluster=cluster, on_found=None, on_lost=None,
                       resolve_timeout=min(RESOLVE_TIMEOUT, timeout))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tracker.start()
        await asyncio.sleep(timeout * 0.8)
        # Give resolutions already under way the rest of the time.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await tracker.drain()
        return tracker.peers()
    finally:
        await tracker.stop()
        await aiozc.async_close()
