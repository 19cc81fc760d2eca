#!/usr/bin/env python3
"""Route stability figures of issue 15 on real brokers in network namespaces.

Builds the diamond A-B-D / A-C-D of ``tests/netns_hosts.py`` (four network
namespaces, one veth pair per edge, IP forwarding off, so A reaches D only
through the brokers on B or C), starts one real broker per namespace with
the default configuration (damping on, 1 s heartbeats; ``--fast`` uses the
test suite's 0.3 s ones), and measures:

1. **At rest** for ``--seconds``: how often A's route to D changes (its path
   as QUERY ``route`` reports it, polled every ``--poll`` s in A's
   namespace), and per broker the LSAs sent and received (counters
   ``lsas_sent`` / ``lsas_received``, flooded copies included) and the
   ``topology:updated`` events it logged (QUERY ``events``), per minute;
   and the highest packet loss each edge was advertised with meanwhile (a
   changed loss changes the LSA's links, hence SPF and topology:updated,
   though SPF's path cost does not use it).
2. **Route switch after a delay moves**, ``--trials`` times: A dials B and C
   through ``tests/delay_relay.py`` (a userspace TCP relay on B and on C,
   0 ms at first: the kernels here have no netem).  The relay of A's current
   first hop is set to ``--delay`` ms one way; the figure is the time from
   that until A's route to D avoids that hop.  The delay is then removed and
   the script waits up to ``--timeout`` s for the route to come back (with
   equal costs again, the deterministic tie-break of SPF picks the first
   path again; docs/protocol.md sections 15.6 "cost band" and 16.5
   describe the damping that decides when).

Times are wall-clock from the control-file write (the relay re-reads it
every 0.1 s) to the first poll that shows the change, so they carry up to
``--poll`` + 0.1 s of measurement granularity.  The load average is printed
next to every figure: on a shared machine the event loops' own delay is part
of what is measured.

Linux only, as root (it creates and removes network namespaces, named with
this process's pid; iptables is not needed).  Example::

    sudo python scripts/route_figures.py --seconds 120 --trials 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _benchlib import Child
from netns_hosts import Diamond, can_make_namespaces

ROOT = Path(__file__).resolve().parents[1]
RELAY = ROOT / "tests" / "delay_relay.py"
#: Base port of every broker (each namespace has its own ports).
BASE_PORT = 7700
#: Port of the delay relay on B and C (its 4 ports relay to the broker's 4).
RELAY_PORT = 7800
#: The test suite's quick heartbeats (tests/helpers.py FAST_ENV), for --fast.
FAST_ENV = {"OPERONE_BROKER_HEARTBEAT_INTERVAL": "0.3",
            "OPERONE_WORKERS_HEARTBEAT_INTERVAL": "0.2"}


# =====================================================================
# The sampler: runs inside one namespace, next to its broker
# =====================================================================
async def sample(home: str, dest: str | None, f: TextIO, poll: float, every: float) -> None:
    """Write JSON lines to ``f``: ``{"t", "path"}`` whenever the route to
    ``dest`` changes (polled every ``poll`` s), and every ``every`` s
    ``{"t", "lsas_sent", "lsas_received", "topo"}`` (topo: topology:updated
    events logged so far, counted from the broker's event log)."""
    from operone_zmq.aio.client import AsyncClient
    from operone_zmq.errors import OperoneError

    seq, topo, last_path, next_stats = 0, 0, "unset", 0.0
    async with AsyncClient.from_home(home) as c:
        while True:
            try:
                now = time.time()
                if dest is not None:
                    r = await c.route(dest)
                    path = "-".join(r["path"]) if r.get("reachable") else "none"
                    if path != last_path:
                        f.write(json.dumps({"t": time.time(), "path": path}) + "\n")
                        last_path = path
                if now >= next_stats:
                    next_stats = now + every
                    while True:
                        a = await c.query("events", {"since": seq})
                        topo += sum(e["event"] == "topology:updated" for e in a["events"])
                        if not a["events"]:
                            break
                        seq = a["next"]
                    s = await c.stats()
                    rec = {"t": time.time(), "topo": topo,
                           "lsas_sent": int(s.get("lsas_sent", 0)),
                           "lsas_received": int(s.get("lsas_received", 0))}
                    if dest is not None:  # the loss every edge is advertised with
                        g = await c.topology()
                        rec["loss"] = {f"{e['source']}-{e['target']}": e.get("loss", 0.0)
                                       for e in g["edges"]}
                    f.write(json.dumps(rec) + "\n")
            except (OperoneError, TimeoutError, OSError, KeyError) as exc:
                f.write(json.dumps({"t": time.time(), "error": repr(exc)}) + "\n")
            await asyncio.sleep(poll)


# =====================================================================
# The orchestrator
# =====================================================================
class Run:
    """The diamond, its brokers, relays and samplers (all stopped by stop())."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        from operone_zmq.config import Home, init_home, node_signing_key
        from operone_zmq.security.keys import TrustStore, load_keypair

        self.work, self.args = work, args
        self.net = Diamond()
        self.children: list[Child] = []
        self.homes = {}
        for h in "abcd":
            home = Home(work / h)
            init_home(home, h, base_port=BASE_PORT, host="0.0.0.0")
            self.homes[h] = home
        for x in "abcd":
            store = TrustStore(self.homes[x].trust_dir)
            for y in "abcd":
                if x != y:
                    store.accept(y, load_keypair(self.homes[y].node_public).public,
                                 source="route_figures: the same diamond",
                                 signing_key=node_signing_key(self.homes[y]))
        self.env = {**os.environ, "OPERONE_LOG_LEVEL": "warning",
                    **(FAST_ENV if args.fast else {})}
        self.env.pop("OPERONE_NODE_ID", None)
        self.control = {h: work / f"delay-{h}" for h in "bc"}
        self.samples = {h: work / f"sample-{h}.jsonl" for h in "abcd"}

    def _child(self, name: str, host: str, argv: list[str]) -> Child:
        c = Child(name, self.net.exec_argv(host, argv), self.work / f"{name}.log", self.env)
        self.children.append(c)
        return c

    def _wait_file(self, c: Child, path: Path, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not c.alive():
                raise RuntimeError(f"{c.name} exited:\n{c.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{c.name} not ready after {timeout} s:\n{c.tail()}")
            time.sleep(0.05)

    def start(self) -> None:
        n = self.net
        n.create()
        for h in "bc":
            self.control[h].write_text("0 0\n")
            ready = self.work / f"relay-{h}.ready"
            c = self._child(f"relay-{h}", h, [
                sys.executable, str(RELAY), n.addr("a" + h, h), str(RELAY_PORT), "127.0.0.1",
                str(BASE_PORT), "--control", str(self.control[h]), "--ready", str(ready)])
            self._wait_file(c, ready)
        peers = {"a": [f"b@{n.addr('ab', 'b')}:{RELAY_PORT}",
                       f"c@{n.addr('ac', 'c')}:{RELAY_PORT}"],
                 "b": [f"d@{n.addr('bd', 'd')}:{BASE_PORT}"],
                 "c": [f"d@{n.addr('cd', 'd')}:{BASE_PORT}"], "d": []}
        for h in "dbca":
            ready = self.work / f"{h}.ready"
            dial = [a for p in peers[h] for a in ("--peer", p)]
            c = self._child(f"broker-{h}", h, [
                sys.executable, "-m", "operone_zmq", "--home", str(self.homes[h].path),
                "broker", "start", "--ready-file", str(ready), *dial])
            self._wait_file(c, ready)
        for h in "abcd":
            self._child(f"sampler-{h}", h, [
                sys.executable, str(Path(__file__).resolve()), "--sampler",
                str(self.homes[h].path), "--sampler-out", str(self.samples[h]),
                "--sampler-dest", "d" if h == "a" else "", "--poll", str(self.args.poll)])

    def stop(self) -> None:
        for c in reversed(self.children):
            c.stop()
        self.net.destroy()

    def records(self, h: str) -> list[dict[str, Any]]:
        out = []
        try:
            lines = self.samples[h].read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # the line being written
        return out

    def path(self) -> str | None:
        """A's latest route to D (as "a-b-d"), None before the first sample."""
        paths = [r["path"] for r in self.records("a") if "path" in r]
        return paths[-1] if paths else None

    def wait_path(self, ok: Any, timeout: float) -> tuple[float | None, str | None]:
        """Seconds until A's route satisfies ``ok`` (by the sample's own
        time, from now), or None after ``timeout``; and the path then."""
        t0 = time.time()
        p = self.path()
        if p is not None and ok(p):
            return 0.0, p
        while time.time() - t0 < timeout:
            for r in self.records("a"):
                if "path" in r and r["t"] >= t0 and ok(r["path"]):
                    return r["t"] - t0, r["path"]
            time.sleep(0.1)
        return None, self.path()

    def counters(self, h: str, t: float) -> dict[str, Any]:
        """The last stats sample of ``h`` at or before wall time ``t``."""
        recs = [r for r in self.records(h) if "topo" in r and r["t"] <= t]
        if not recs:
            raise RuntimeError(f"no stats sample of {h} before t={t}: {self.records(h)[-3:]}")
        return recs[-1]


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def measure(run: Run, args: argparse.Namespace) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    # Warm-up: A must reach D in two hops before anything counts.
    took, p = run.wait_path(lambda p: p.startswith("a-") and p.endswith("-d"), 60)
    if took is None:
        raise RuntimeError(f"A never got a route to D (last: {p})")
    print(f"A routes to D via {p}; warming up {args.warmup:g} s", flush=True)
    time.sleep(args.warmup)

    # 1. At rest.
    load0 = _load()
    t0 = time.time() + args.stats_every  # the first stats sample after now
    time.sleep(args.seconds + 2 * args.stats_every)
    t1 = time.time() - args.stats_every
    load1 = _load()
    c0 = {h: run.counters(h, t0) for h in "abcd"}
    c1 = {h: run.counters(h, t1) for h in "abcd"}
    flips = [r for r in run.records("a") if "path" in r and c0["a"]["t"] < r["t"] <= c1["a"]["t"]]
    mins = (c1["a"]["t"] - c0["a"]["t"]) / 60.0
    when = f"load {load0} -> {load1}"
    rows.append((f"A->D route flips at rest ({mins * 60:.0f} s)",
                 f"{len(flips)} ({len(flips) / mins:.1f}/min)"
                 + (f": {', '.join(r['path'] for r in flips)}" if flips else ""), when))
    for h in "abcd":
        m = (c1[h]["t"] - c0[h]["t"]) / 60.0
        sent = (c1[h]["lsas_sent"] - c0[h]["lsas_sent"]) / m
        recv = (c1[h]["lsas_received"] - c0[h]["lsas_received"]) / m
        topo = (c1[h]["topo"] - c0[h]["topo"]) / m
        rows.append((f"{h.upper()}: LSAs sent / received / topology:updated per min",
                     f"{sent:.1f} / {recv:.1f} / {topo:.1f}", when))
    losses: dict[str, float] = {}
    for r in run.records("a"):
        if "loss" in r and c0["a"]["t"] <= r["t"] <= c1["a"]["t"]:
            for e, x in r["loss"].items():
                losses[e] = max(losses.get(e, 0.0), x)
    rows.append(("highest loss advertised at rest, per edge (A's LSDB)",
                 ", ".join(f"{e} {x:.2f}" for e, x in sorted(losses.items())), when))
    print("at rest: done", flush=True)

    # 2. Route switch after a delay moves.
    for i in range(args.trials):
        p = run.path() or ""
        hop = p.split("-")[1] if p.count("-") == 2 else None
        if hop not in ("b", "c"):
            rows.append((f"trial {i + 1}", f"A's route to D is {p!r}: skipped", _load()))
            continue
        load = _load()
        run.control[hop].write_text(f"{args.delay:g} 0\n")
        took, p2 = run.wait_path(lambda p, hop=hop: p.split("-")[1:2] not in ([hop], []),
                                 args.timeout)
        rows.append((f"trial {i + 1}: +{args.delay:g} ms one way on a-{hop}: route avoids it",
                     f"no switch in {args.timeout:g} s" if took is None
                     else f"{took:.1f} s (now {p2})", f"load {load}"))
        time.sleep(args.hold)
        load = _load()
        run.control[hop].write_text("0 0\n")
        back, p3 = run.wait_path(lambda p, hop=hop: p.split("-")[1:2] == [hop], args.timeout)
        rows.append((f"trial {i + 1}: delay removed: route back on a-{hop}",
                     f"not back in {args.timeout:g} s (stays {p3})" if back is None
                     else f"{back:.1f} s", f"load {load}"))
        print(f"trial {i + 1}: done", flush=True)
        time.sleep(args.settle)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="seconds measured at rest (default 120)")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds after A first routes to D before the rest phase")
    parser.add_argument("--trials", type=int, default=3, help="delay moves (default 3)")
    parser.add_argument("--delay", type=float, default=40.0, help="one-way delay added, ms")
    parser.add_argument("--hold", type=float, default=15.0,
                        help="seconds the delay stays after the route moved")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds between trials")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="longest wait for a route change, s")
    parser.add_argument("--poll", type=float, default=0.2,
                        help="seconds between route queries at A")
    parser.add_argument("--stats-every", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument("--fast", action="store_true",
                        help="0.3 s broker heartbeats (the test suite's) instead of 1 s")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--sampler", help=argparse.SUPPRESS)
    parser.add_argument("--sampler-out", help=argparse.SUPPRESS)
    parser.add_argument("--sampler-dest", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sampler:
        with open(args.sampler_out, "a", buffering=1) as f:
            try:
                asyncio.run(sample(args.sampler, args.sampler_dest or None, f, args.poll,
                                   args.stats_every))
            except KeyboardInterrupt:
                pass
        return 0

    if sys.platform != "linux":
        print("route_figures.py needs Linux (network namespaces)", file=sys.stderr)
        return 2
    why = can_make_namespaces()
    if why is not None:
        print(f"route_figures.py needs root and iproute2: {why}", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the namespaces are always removed.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="route-figures-"))
    run = Run(work, args)
    try:
        run.start()
        rows = measure(run, args)
    finally:
        run.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    hb = "0.3 s (--fast)" if args.fast else "1 s (default)"
    print(f"\nDiamond A-B-D / A-C-D in network namespaces; heartbeat {hb}; damping on; "
          f"cpus {os.cpu_count()}" + (f"; logs in {work}" if args.keep else ""))
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    for name, value, load in rows:
        print(f"{name:<{w}}  {value:<{v}}  {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
