"""Zero-config discovery (mDNS / DNS-SD) between real processes.

Multicast on one machine: the test builds its own little LAN of network
namespaces, three "hosts" each with one veth link (10.213.50.N/24, inside
the namespaces only) plugged into a bridge that lives in a fourth namespace.
The host's own interfaces and routes are never touched, and the namespaces
(with everything in them) are deleted afterwards.  Each participant is a
``tests/discovery_runner.py`` process started with ``ip netns exec`` that
prints its found/lost events as JSON lines.  Needs root and iproute2, else
the tests are skipped.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from netns_hosts import Lan, lan_or_skip

from operone_zmq.aio.discovery import (
    SERVICE_TYPE,
    DiscoveredPeer,
    Discovery,
    InvalidRecord,
)
from operone_zmq.errors import ConfigError
from operone_zmq.security.keys import fingerprint

pytestmark = pytest.mark.integration

RUNNER = Path(__file__).resolve().parents[1] / "discovery_runner.py"
#: Seconds for peers to find each other (probing our own name takes ~1 s).
FIND_TIMEOUT = 10.0
#: Seconds for a stopped peer to be reported lost (goodbye packets: at once).
LOST_TIMEOUT = 5.0


class Runner:
    """One discovery_runner.py process in a host's namespace; stopped for sure."""

    def __init__(self, lan: Lan, host: int, *args: str, log: Path) -> None:
        self.host = host
        self.args = args
        self.events: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._err = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.log = log
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", lan.ns[host], sys.executable, str(RUNNER), *args,
             "--interface", lan.addr[host]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            try:
                self._q.put(json.loads(line))
            except ValueError:
                continue
        self._q.put(None)

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
             what: str) -> dict[str, Any]:
        """The first event (seen already or coming) for which pred is true."""
        for ev in self.events:
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                item = self._q.get(timeout=max(left, 0.0))
            except queue.Empty:
                raise TimeoutError(f"host {self.host}: timed out after {timeout} s waiting for "
                                   f"{what}; events: {self.events}; log: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}") from None
            if item is None:
                raise RuntimeError(f"host {self.host} exited (status {self.p.wait(5)}) while "
                                   f"waiting for {what}: {self.log.read_text(errors='replace')}")
            self.events.append(item)
            if pred(item):
                return item

    def ready(self) -> dict[str, Any]:
        return self.wait(lambda e: e["event"] == "ready", FIND_TIMEOUT, "ready")

    def found(self, node: str, timeout: float = FIND_TIMEOUT) -> dict[str, Any]:
        ev = self.wait(lambda e: e["event"] == "found" and e["peer"]["node"] == node, timeout,
                       f"{node} to be found")
        peer: dict[str, Any] = ev["peer"]
        return peer

    def stats(self) -> dict[str, Any]:
        assert self.p.stdin is not None
        n = sum(1 for e in self.events if e["event"] == "stats")
        self.p.stdin.write("stats\n")
        self.p.stdin.flush()
        seen = 0

        def nth_stats(e: dict[str, Any]) -> bool:
            nonlocal seen
            if e["event"] != "stats":
                return False
            seen += 1
            return seen > n

        return self.wait(nth_stats, 5, "stats")

    def poll_stats(self, pred: Callable[[dict[str, int]], bool], timeout: float,
                   what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.stats()
            if pred(ev["stats"]):
                return ev
            if time.monotonic() > deadline:
                raise TimeoutError(f"host {self.host}: {what}; last stats {ev['stats']}")
            time.sleep(0.1)

    def names(self, event: str) -> list[str]:
        return [e["peer"]["node"] if event == "found" else e["node"]
                for e in self.events if e["event"] == event]

    def terminate(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()

    def stop(self, timeout: float = 5.0) -> int:
        self.terminate()
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        if self.p.stdin is not None:
            self.p.stdin.close()
        self._reader.join(5)
        if self.p.stdout is not None:
            self.p.stdout.close()
        self._err.close()
        return self.p.returncode


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    with lan_or_skip(3) as net:
        yield net


@pytest.fixture
def spawn(lan: Lan, tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    """Start runners; every one is stopped at the end of the test."""
    runners: list[Runner] = []

    def start(host: int, *args: str) -> Runner:
        r = Runner(lan, host, *args, log=tmp_path / f"runner-{len(runners)}.log")
        runners.append(r)
        return r

    try:
        yield start
    finally:
        for r in runners:
            r.terminate()
        for r in runners:
            status = r.stop()
            # Shown by pytest when the test failed.
            print(f"--- host {r.host} {r.args[:1]} exit {status}; events: {r.events}\n"
                  f"{r.log.read_text(errors='replace')[-3000:]}")


def new_key() -> str:
    return zmq.curve_keypair()[0].decode("ascii")


def serve(spawn: Callable[..., Runner], host: int, node: str, cluster: str, port: int,
          key: str) -> Runner:
    # --key=...: a Z85 key may start with "-", which argparse would take for an option.
    return spawn(host, "serve", "--node", node, "--cluster", cluster, "--port", str(port),
                 f"--key={key}")


# --------------------------------------------------------------- on the LAN
def test_peers_find_each_other_and_ignore_other_clusters(
        lan: Lan, spawn: Callable[..., Runner]) -> None:
    keys = {n: new_key() for n in "abc"}
    t0 = time.monotonic()
    a = serve(spawn, 1, "a", "c1", 7700, keys["a"])
    b = serve(spawn, 2, "b", "c1", 7710, keys["b"])
    c = serve(spawn, 3, "c", "c2", 7720, keys["c"])
    seen_b = a.found("b")
    seen_a = b.found("a")
    took = time.monotonic() - t0
    for peer, node, host, port in ((seen_b, "b", 2, 7710), (seen_a, "a", 1, 7700)):
        assert peer["node"] == node
        assert peer["cluster"] == "c1"
        assert peer["port"] == port
        assert peer["public_key"] == keys[node]
        assert peer["fingerprint"] == fingerprint(keys[node].encode())
        assert peer["host"] == lan.addr[host]
        assert peer["address"] == f"{node}@{lan.addr[host]}:{port}"
        assert peer["version"] == 1
    assert a.ready()["service"] == f"a.{SERVICE_TYPE}"
    # c's record reaches a and b and is rejected (another cluster); c, alone
    # in c2, rejects both of theirs.
    a.poll_stats(lambda s: s["other_cluster"] >= 1, FIND_TIMEOUT, "c's record never seen")
    b.poll_stats(lambda s: s["other_cluster"] >= 1, FIND_TIMEOUT, "c's record never seen")
    st = c.poll_stats(lambda s: s["other_cluster"] >= 2, FIND_TIMEOUT, "a and b never seen")
    assert st["stats"]["found"] == 0
    assert st["peers"] == []
    assert a.names("found") == ["b"]
    assert b.names("found") == ["a"]
    assert c.names("found") == []
    a_now = a.stats()
    assert [p["node"] for p in a_now["peers"]] == ["b"]
    assert a_now["stats"]["invalid"] == 0
    print(f"mutual discovery in {took:.2f} s")


def test_stopped_peer_is_reported_lost(spawn: Callable[..., Runner]) -> None:
    a = serve(spawn, 1, "a", "c1", 7700, new_key())
    b = serve(spawn, 2, "b", "c1", 7710, new_key())
    a.found("b")
    b.found("a")
    b.ready()
    t0 = time.monotonic()
    assert b.stop() == 0
    assert b.names("lost") == []
    a.wait(lambda e: e["event"] == "lost" and e["node"] == "b", LOST_TIMEOUT, "b to be lost")
    took = time.monotonic() - t0
    st = a.stats()
    assert st["peers"] == []
    assert st["stats"]["lost"] == 1
    assert a.names("lost") == ["b"]
    print(f"lost reported {took:.2f} s after SIGTERM")


def test_browse_lists_the_live_brokers(lan: Lan, spawn: Callable[..., Runner]) -> None:
    a = serve(spawn, 1, "a", "c1", 7700, new_key())
    b = serve(spawn, 2, "b", "c1", 7710, new_key())
    c = serve(spawn, 3, "c", "c2", 7720, new_key())
    a.found("b")
    b.found("a")
    b.ready()
    c.ready()
    assert b.stop() == 0
    a.wait(lambda e: e["event"] == "lost" and e["node"] == "b", LOST_TIMEOUT, "b to be lost")
    t0 = time.monotonic()
    every = spawn(2, "browse", "--timeout", "2")
    only_c1 = spawn(2, "browse", "--timeout", "2", "--cluster", "c1")
    found_all = every.wait(lambda e: e["event"] == "peers", 10, "browse results")["peers"]
    found_c1 = only_c1.wait(lambda e: e["event"] == "peers", 10, "browse results")["peers"]
    took = time.monotonic() - t0
    assert sorted((p["node"], p["cluster"], p["host"], p["port"]) for p in found_all) == [
        ("a", "c1", lan.addr[1], 7700), ("c", "c2", lan.addr[3], 7720)]
    assert [p["address"] for p in found_c1] == [f"a@{lan.addr[1]}:7700"]
    print(f"two concurrent 2 s browses took {took:.2f} s")


def _txt(node: str, public: str, drop: str = "", **changes: str) -> str:
    props = {"node": node, "cluster": "c1", "port": "7740", "key": public,
             "fp": fingerprint(public.encode()), "name": node, "v": "1", **changes}
    return json.dumps({k: v for k, v in props.items() if k != drop})


def test_invalid_records_are_ignored_and_counted(spawn: Callable[..., Runner]) -> None:
    a = serve(spawn, 1, "a", "c1", 7700, new_key())
    k = new_key()
    bad = [
        _txt("x1", k, drop="key"),
        _txt("x2", k, key="x" * 39 + "\u00e9"),        # not ASCII
        _txt("x3", k, key="#" * 40),                   # not Z85 of a key
        _txt("x4", k, fp="0" * 16),                    # fingerprint mismatch
        _txt("x5", k, port="0"),
        _txt("x6", k, port="65535"),                   # base port + 3 > 65535
        _txt("x7", k, port="+7740"),
        _txt("x8", k, v="2"),                          # a future layout
        _txt("../x9", k),                              # not a node id
        _txt("x10", k, cluster=""),
        _txt("x11", k, name="bell\u0007"),
        _txt("x12", k, port="7741"),                   # differs from the SRV port
    ]
    good = _txt("ok", k)
    raw = spawn(2, "raw", "--instance", "rec", "--port", "7740",
                *[f"--txt={t}" for t in [*bad, good]])
    raw.ready()
    peer = a.found("ok")
    assert peer["public_key"] == k
    assert peer["port"] == 7740
    st = a.poll_stats(lambda s: s["invalid"] >= len(bad), FIND_TIMEOUT,
                      "every bad record to be counted")
    assert st["stats"]["invalid"] == len(bad)
    assert a.names("found") == ["ok"]
    assert a.p.poll() is None
    raw.stop()
    a.wait(lambda e: e["event"] == "lost" and e["node"] == "ok", LOST_TIMEOUT, "ok to be lost")


# ------------------------------------------------------------- no network
_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
_PROPS = {b"node": b"pc2", b"cluster": b"c1", b"port": b"7700", b"key": _KEY.encode(),
          b"fp": fingerprint(_KEY.encode()).encode(), b"name": b"PC 2", b"v": b"1"}


def test_a_valid_record_is_parsed() -> None:
    p = DiscoveredPeer.from_record(f"pc2.{SERVICE_TYPE}", _PROPS, ["fe80::1", "2001:db8::2",
                                                                  "192.0.2.7"], 7700)
    assert (p.node, p.cluster, p.port, p.public_key, p.name, p.version) == (
        "pc2", "c1", 7700, _KEY, "PC 2", 1)
    assert p.addresses == ("192.0.2.7", "2001:db8::2")      # link-local left out
    assert p.address == "pc2@192.0.2.7:7700"
    v6 = DiscoveredPeer.from_record(f"pc2.{SERVICE_TYPE}", _PROPS, ["2001:db8::2"])
    assert v6.address == "pc2@[2001:db8::2]:7700"


@pytest.mark.parametrize(("field", "value"), [
    (b"node", None), (b"node", b""), (b"node", b".hidden"), (b"node", b"a" * 64),
    (b"cluster", b"a b"), (b"port", b"07700"), (b"port", b"99999"), (b"port", b"-1"),
    (b"key", b"/etc/passwd"), (b"key", _KEY.encode()[:-1] + b"\xff"), (b"fp", b"ABC"),
    (b"name", b"\xff\xfe"), (b"name", b"x" * 65), (b"v", b"01"), (b"v", b"one"),
])
def test_bad_fields_are_refused(field: bytes, value: bytes | None) -> None:
    with pytest.raises(InvalidRecord):
        DiscoveredPeer.from_record(f"pc2.{SERVICE_TYPE}", {**_PROPS, field: value},
                                   ["192.0.2.7"], 7700)


def test_records_without_a_usable_address_are_refused() -> None:
    with pytest.raises(InvalidRecord, match="address"):
        DiscoveredPeer.from_record(f"pc2.{SERVICE_TYPE}", _PROPS, ["fe80::1", "0.0.0.0"])


@pytest.mark.parametrize("kwargs", [
    {"node_id": "../x"}, {"node_id": "n" * 64}, {"cluster": ""}, {"port": 0},
    {"port": 65533}, {"public_key": "short"}, {"addresses": ["fe80::1"]},
    {"addresses": ["not-an-ip"]}, {"interfaces": ["eth0"]},
])
def test_discovery_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"node_id": "pc1", "cluster": "c1", "port": 7700,
                            "public_key": _KEY, **kwargs}
    with pytest.raises(ConfigError):
        Discovery(args.pop("node_id"), **args)


def test_the_announced_record_is_one_we_accept() -> None:
    d = Discovery("pc1", cluster="c1", port=7700, public_key=_KEY, name="\u00e9" * 80 + "\n",
                  addresses=["192.0.2.1"])
    props = {k.encode(): v.encode() for k, v in d.properties.items()}
    assert len(props[b"name"]) <= 200
    p = DiscoveredPeer.from_record(f"pc1.{SERVICE_TYPE}", props, ["192.0.2.1"], 7700)
    assert (p.node, p.cluster, p.port, p.public_key, p.fingerprint) == (
        "pc1", "c1", 7700, _KEY, d.fingerprint)
