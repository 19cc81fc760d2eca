"""The fault injection the partition and measurement tests use works: packet
loss on a diamond edge (iptables statistic) and added delay (delay_relay.py
between two real brokers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FAST_ENV, Proc, make_home, wait_for
from netns_hosts import Diamond, diamond_or_skip

from operone_zmq.config import node_signing_key
from operone_zmq.security.keys import TrustStore, load_keypair

pytestmark = pytest.mark.multihost

RELAY = Path(__file__).resolve().parents[1] / "delay_relay.py"


@pytest.fixture
def net() -> Iterator[Diamond]:
    with diamond_or_skip() as d:
        yield d


def _rx_packets(net: Diamond, host: str, dev: str) -> int:
    out = subprocess.run(net.exec_argv(host, ["cat", f"/sys/class/net/{dev}/statistics/"
                                               "rx_packets"]),
                         capture_output=True, text=True, timeout=10, check=True)
    return int(out.stdout)


def _dropped(net: Diamond, host: str) -> int:
    out = subprocess.run(net.exec_argv(host, ["iptables", "-w", "-L", "INPUT", "-v", "-n",
                                              "-x"]),
                         capture_output=True, text=True, timeout=10, check=True)
    return sum(int(line.split()[0]) for line in out.stdout.splitlines()
               if "statistic" in line and "DROP" in line)


def test_loss_on_an_edge_drops_about_that_share_of_packets(net: Diamond) -> None:
    """5 % loss on a-b: about 5 % of what reaches b is dropped, and TCP still
    delivers every byte."""
    server = subprocess.Popen(net.exec_argv("b", [sys.executable, "-P", "-c", (
        "import socket; s = socket.create_server(('0.0.0.0', 9100)); c, _ = s.accept()\n"
        "n = 0\nwhile (d := c.recv(65536)):\n    n += len(d)\nprint(n)")]),
        stdout=subprocess.PIPE, text=True)
    # One TCP segment per packet on a's side of the edge: without it the
    # kernel hands veth GSO packets of several segments when the sender
    # falls behind (a loaded machine), and b counts fewer, bigger packets.
    dev_a = net.dev("ab", "a")
    subprocess.run(net.exec_argv("a", ["ip", "link", "set", "dev", dev_a, "gso_max_segs", "1"]),
                   check=True, capture_output=True, timeout=10)
    try:
        time.sleep(0.5)
        net.set_loss("ab", 0.05)
        before = _rx_packets(net, "b", net.dev("ab", "b"))
        subprocess.run(net.exec_argv("a", [sys.executable, "-P", "-c", (
            "import socket; c = socket.socket()\n"
            # Segments of at most 1400 bytes (the MSS set before connecting),
            # and no Nagle: at least one packet per send however loaded the
            # machine is (a delayed sender's sends would otherwise coalesce).
            "c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)\n"
            "c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
            f"c.connect(('{net.addr('ab', 'b')}', 9100))\n"
            "for _ in range(400):\n    c.sendall(b'x' * 1400)\n    __import__('time')"
            ".sleep(0.001)\nc.close()")]), check=True, timeout=120)
        out, _ = server.communicate(timeout=60)
        assert int(out) == 400 * 1400
        seen = _rx_packets(net, "b", net.dev("ab", "b")) - before
        dropped = _dropped(net, "b")
        assert seen >= 400, seen  # every data segment is a packet
        assert 0.01 < dropped / seen < 0.12, (dropped, seen)
        net.set_loss("ab", 0)
        assert _dropped(net, "b") == 0  # the rule is gone
    finally:
        server.kill()
        subprocess.run(net.exec_argv("a", ["ip", "link", "set", "dev", dev_a, "gso_max_segs",
                                           "65535"]), capture_output=True, timeout=10)
        server.wait(5)


def test_the_relay_delays_a_broker_link(net: Diamond, tmp_path: Path) -> None:
    """a dials b through a relay on b that adds 40 ms each way: a measures
    the link's RTT above 60 ms; without the delay it drops back."""
    homes = {h: make_home(tmp_path / h, h, 7700, host="0.0.0.0") for h in "ab"}
    for x, y in (("a", "b"), ("b", "a")):
        TrustStore(homes[x].trust_dir).accept(y, load_keypair(homes[y].node_public).public,
                                              signing_key=node_signing_key(homes[y]))
    env = {**os.environ, **FAST_ENV}
    control = tmp_path / "delay"
    control.write_text("40 0\n")
    procs: list[Proc] = []

    def rtt() -> float | None:
        r = subprocess.run(net.exec_argv("a", [sys.executable, "-P", "-m", "operone_zmq", "--home",
                                               str(homes["a"].path), "peers", "--json"]),
                           env=env, capture_output=True, text=True, timeout=30)
        peers = json.loads(r.stdout) if r.returncode == 0 else []
        return next((p["rtt_ms"] for p in peers if p["node"] == "b" and p["state"] == "up"),
                    None)

    try:
        ready = tmp_path / "relay.ready"
        procs.append(Proc(net.exec_argv("b", [sys.executable, str(RELAY),
                                              net.addr("ab", "b"), "7800", "127.0.0.1", "7700",
                                              "--control", str(control), "--ready",
                                              str(ready)]), env, tmp_path / "relay.log"))
        wait_for(ready.exists, 20, "the relay")
        for h, peer in (("b", []), ("a", ["--peer", f"b@{net.addr('ab', 'b')}:7800"])):
            r = tmp_path / f"{h}.ready"
            procs.append(Proc(net.exec_argv(h, [sys.executable, "-P", "-m", "operone_zmq", "--home",
                                                str(homes[h].path), "broker", "start",
                                                "--ready-file", str(r), *peer]),
                              env, tmp_path / f"{h}.log"))
            wait_for(r.exists, 30, f"broker {h}")
        wait_for(lambda: (rtt() or 0) > 60, 30, "a to measure the added delay", step=0.5)
        control.write_text("0 0\n")
        wait_for(lambda: (rtt() or 999) < 30, 30, "the RTT to drop back", step=0.5)
    finally:
        for p in reversed(procs):
            p.stop()
