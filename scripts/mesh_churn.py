#!/usr/bin/env python3
"""Run N real brokers on 127.0.0.1 at rest and measure their routing churn.

Starts ``--nodes`` broker processes (``operone broker start``, no workers)
linked as the seeded random mesh of ``scripts/simulate.py`` (average degree
``--degree``), waits ``--warmup`` seconds, then for ``--seconds`` measures
per broker: CPU used (from /proc, user + system), LSAs sent and received
(its ``lsas_sent`` / ``lsas_received`` counters, flooded copies included),
and the links still up at the end.  Linux only.

The figures are only meaningful on an otherwise idle machine; on a shared
one they show the order of magnitude.  Example::

    python scripts/mesh_churn.py --nodes 50 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _benchlib import BenchMesh

from operone_zmq.routing.sim import random_topology

#: Clock ticks per second for /proc/PID/stat times.
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _HZ


async def _stats(mesh: BenchMesh) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, node in mesh.nodes.items():
        async with node.client() as c:
            s = await c.stats()
        out[name] = {k: int(s.get(k, 0)) for k in ("lsas_sent", "lsas_received")}
        out[name]["peers"] = len(s.get("peers", []))
    return out


async def run(args: argparse.Namespace, work: Path) -> int:
    names, edges = random_topology(args.nodes, args.degree, seed=args.seed)
    for attempt in range(5):
        # Every node picks its ports before any binds: make sure no two overlap.
        mesh = BenchMesh(work / str(attempt), names)
        bases = sorted(node.base_port for node in mesh.nodes.values())
        if all(b - a >= 4 for a, b in pairwise(bases)):
            break
    t0 = time.monotonic()
    try:
        await mesh.start(edges)
        print(f"{args.nodes} brokers started in {time.monotonic() - t0:.1f} s; "
              f"{len(edges)} links; warming up {args.warmup:g} s", flush=True)
        await asyncio.sleep(args.warmup)
        pids = {n: node.broker.pid for n, node in mesh.nodes.items() if node.broker}
        cpu0 = {n: _cpu_seconds(p) for n, p in pids.items()}
        s0 = await _stats(mesh)
        w0 = time.monotonic()
        await asyncio.sleep(args.seconds)
        s1 = await _stats(mesh)
        wall = time.monotonic() - w0
        cpu = [(_cpu_seconds(p) - cpu0[n]) / wall * 100 for n, p in pids.items()]
        sent = [(s1[n]["lsas_sent"] - s0[n]["lsas_sent"]) / wall for n in names]
        recv = [(s1[n]["lsas_received"] - s0[n]["lsas_received"]) / wall for n in names]
        peers = [s1[n]["peers"] for n in names]
        print(f"measured {wall:.1f} s at load average {os.getloadavg()[0]:.1f}")
        print(f"CPU per broker: median {statistics.median(cpu):.1f} %, max {max(cpu):.1f} %, "
              f"total {sum(cpu):.0f} %")
        print(f"LSAs sent per broker per s: median {statistics.median(sent):.2f}, "
              f"mean {statistics.mean(sent):.2f}, mesh total {sum(sent):.0f}/s")
        print(f"LSAs received per broker per s: mean {statistics.mean(recv):.2f}")
        print(f"links up per broker at the end: min {min(peers)}, mean "
              f"{statistics.mean(peers):.1f} (of {2 * len(edges) / len(names):.1f} configured)")
    finally:
        mesh.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--degree", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mesh-churn-") as work:
        return asyncio.run(run(args, Path(work)))


if __name__ == "__main__":
    sys.exit(main())
