"""Network namespaces as separate hosts, created and removed by the tests.

Addresses are inside the namespaces the fixture creates (a private /24 per
veth pair) and nowhere else; nothing is routed outside them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def can_make_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed; .ci/run installs it"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs these tests as root)"
    probe = f"opz-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace here: {exc}"
    _ip("netns", "del", probe)
    return None


class Hosts:
    """Three hosts in a line, A - B - C: A and C each share a link with B
    only, and B does not forward IP, so A cannot reach C directly."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = {h: f"opz{h}{tag}" for h in "abc"}
        self.addr = {"a": "10.213.1.1", "b1": "10.213.1.2", "b2": "10.213.2.1",
                     "c": "10.213.2.2"}
        self._made: list[str] = []

    def create(self) -> None:
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        a, b, c = self.ns["a"], self.ns["b"], self.ns["c"]
        _ip("link", "add", "opzab0", "netns", a, "type", "veth", "peer", "name", "opzab1",
            "netns", b)
        _ip("link", "add", "opzbc0", "netns", b, "type", "veth", "peer", "name", "opzbc1",
            "netns", c)
        for ns, dev, addr in ((a, "opzab0", self.addr["a"]), (b, "opzab1", self.addr["b1"]),
                              (b, "opzbc0", self.addr["b2"]), (c, "opzbc1", self.addr["c"])):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        subprocess.run(["ip", "netns", "exec", b, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                       check=True, capture_output=True, timeout=10)

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def destroy(self) -> None:
        for ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._made.clear()


#: The LAN of :class:`Lan` (inside its namespaces only).
SUBNET = "10.213.50"


class Lan:
    """Hosts 1..n in namespaces, each with eth0 on a bridge in namespace ``br``."""

    def __init__(self, n: int = 3) -> None:
        tag = os.getpid() % 100000
        self.bridge_ns = f"opzdbr{tag}"
        self.ns = {i: f"opzd{i}-{tag}" for i in range(1, n + 1)}
        self.addr = {i: f"{SUBNET}.{i}" for i in self.ns}
        self._made: list[str] = []

    def create(self) -> None:
        br = self.bridge_ns
        _ip("netns", "add", br)
        self._made.append(br)
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        for i, ns in self.ns.items():
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}",
                "netns", br)
            _ip("-n", ns, "addr", "add", f"{self.addr[i]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", br, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", br, "link", "set", f"p{i}", "up")

    def destroy(self) -> None:
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._made.clear()


@contextmanager
def lan_or_skip(n: int = 3) -> Iterator[Lan]:
    """A :class:`Lan` of ``n`` hosts for a fixture, removed afterwards; the test
    is skipped (with the reason) where namespaces or a bridge cannot be made."""
    import pytest

    why = can_make_namespaces()
    if why is not None:
        pytest.skip(why)
    net = Lan(n)
    try:
        try:
            net.create()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot build a veth/bridge LAN in namespaces here: "
                        f"{exc.stderr.decode(errors='replace').strip()}")
        yield net
    finally:
        net.destroy()


#: The four /24s of :class:`Diamond`, one per veth pair (inside its namespaces only).
DIAMOND_SUBNETS = {"ab": "10.213.61", "ac": "10.213.62", "bd": "10.213.63", "cd": "10.213.64"}


def _ns_run(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True,
                   timeout=10)


class Diamond:
    """Four hosts A-B-D and A-C-D: one veth pair per edge, IP forwarding off
    everywhere, so A reaches D only through the brokers on B or C.

    On edge ``xy`` host ``x`` has ``SUBNET.1`` (device ``opzxy0``) and ``y``
    has ``SUBNET.2`` (device ``opzxy1``).  :meth:`cut` and :meth:`heal` take an
    edge down and back: ``how="down"`` sets one end's link down (the kernel
    then refuses to send on it), ``how="drop"`` makes both ends drop every
    packet arriving on it with iptables (silent loss, as a dead switch), and
    ``how="reset"`` drops as well but answers what the first host (``x``,
    the dialler in the tests) sends with a TCP reset of its own: its
    connections die at once while the other end, hearing nothing, keeps its
    own (as when a keepalive or a middlebox times out on one side only)."""

    EDGES = ("ab", "ac", "bd", "cd")

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.ns = {h: f"opzq{h}{tag}" for h in "abcd"}
        self._made: list[str] = []
        self._cut: dict[str, str] = {}
        self._loss: dict[str, float] = {}

    def addr(self, edge: str, host: str) -> str:
        """The address of ``host`` on ``edge``."""
        return f"{DIAMOND_SUBNETS[edge]}.{1 if host == edge[0] else 2}"

    def dev(self, edge: str, host: str) -> str:
        return f"opz{edge}{0 if host == edge[0] else 1}"

    def create(self) -> None:
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ns_run(ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        for e in self.EDGES:
            x, y = e
            _ip("link", "add", self.dev(e, x), "netns", self.ns[x], "type", "veth", "peer",
                "name", self.dev(e, y), "netns", self.ns[y])
            for h in (x, y):
                _ip("-n", self.ns[h], "addr", "add", f"{self.addr(e, h)}/24", "dev",
                    self.dev(e, h))
                _ip("-n", self.ns[h], "link", "set", self.dev(e, h), "up")

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def cut(self, edge: str, how: str = "drop") -> None:
        """Take ``edge`` down (``how``: "down" or "drop"); no-op if it is cut."""
        if edge in self._cut:
            return
        x, y = edge
        if how == "down":
            _ip("-n", self.ns[x], "link", "set", self.dev(edge, x), "down")
        elif how in ("drop", "reset"):
            for h in (x, y):
                _ns_run(self.ns[h], "iptables", "-w", "-I", "INPUT", "-i",
                        self.dev(edge, h), "-j", "DROP")
            if how == "reset":
                _ns_run(self.ns[x], "iptables", "-w", "-I", "OUTPUT", "-o", self.dev(edge, x),
                        "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
        else:
            raise ValueError(f"cut how={how!r}: 'down', 'drop' or 'reset'")
        self._cut[edge] = how

    def heal(self, edge: str) -> None:
        """Undo :meth:`cut` of ``edge`` (no-op if it is not cut)."""
        how = self._cut.pop(edge, None)
        if how is None:
            return
        x, y = edge
        if how == "down":
            _ip("-n", self.ns[x], "link", "set", self.dev(edge, x), "up")
        else:
            if how == "reset":
                _ns_run(self.ns[x], "iptables", "-w", "-D", "OUTPUT", "-o", self.dev(edge, x),
                        "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
            for h in (x, y):
                _ns_run(self.ns[h], "iptables", "-w", "-D", "INPUT", "-i",
                        self.dev(edge, h), "-j", "DROP")

    def set_loss(self, edge: str, fraction: float) -> None:
        """Drop ``fraction`` of the packets arriving at either end of ``edge``
        at random (iptables' statistic match: real packet loss, which TCP
        retransmits), replacing any loss set before; 0 clears it."""
        self.clear_loss(edge)
        if fraction <= 0:
            return
        for h in edge:
            _ns_run(self.ns[h], "iptables", "-w", "-I", "INPUT", "-i", self.dev(edge, h), "-m",
                    "statistic", "--mode", "random", "--probability", f"{fraction:.6f}",
                    "-j", "DROP")
        self._loss[edge] = fraction

    def clear_loss(self, edge: str) -> None:
        fraction = self._loss.pop(edge, None)
        if fraction is None:
            return
        for h in edge:
            _ns_run(self.ns[h], "iptables", "-w", "-D", "INPUT", "-i", self.dev(edge, h), "-m",
                    "statistic", "--mode", "random", "--probability", f"{fraction:.6f}",
                    "-j", "DROP")

    def heal_all(self) -> None:
        for e in list(self._cut):
            self.heal(e)

    def destroy(self) -> None:
        for ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._made.clear()
        self._cut.clear()
        self._loss.clear()


def can_cut_with_iptables(ns: str) -> str | None:
    """None when iptables works inside namespace ``ns``, else why not."""
    if shutil.which("iptables") is None and not os.path.exists("/usr/sbin/iptables"):
        return "iptables is not installed; scripts/test.sh installs it"
    try:
        _ns_run(ns, "iptables", "-w", "-L", "INPUT", "-n")
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"iptables does not work in a namespace here: {exc}"
    return None


@contextmanager
def diamond_or_skip() -> Iterator[Diamond]:
    """A :class:`Diamond` for a fixture, removed afterwards (skips with the
    reason where namespaces, veths or iptables are unavailable)."""
    import pytest

    why = can_make_namespaces()
    if why is not None:
        pytest.skip(why)
    net = Diamond()
    try:
        try:
            net.create()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot build the veth diamond in namespaces here: "
                        f"{exc.stderr.decode(errors='replace').strip()}")
        why = can_cut_with_iptables(net.ns["a"])
        if why is not None:
            pytest.skip(why)
        yield net
    finally:
        net.destroy()
