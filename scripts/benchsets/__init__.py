"""The benchmark sets of ``scripts/bench.py``, one module each, over one harness.

    harness.py      drivers, /proc meters, the Result table and its rendering
    raw.py          the raw pyzmq baseline (drained sockets; bench.py's hidden
                    sub-commands run its broker, worker and relays)
    stacks.py       client -> broker -> worker stacks: raw, raw with relays, operone
    foundation.py   set "foundation": throughput, latency, bulk against raw pyzmq
    routing.py      set "routing": Dijkstra, the routing table, the flooding simulator
    mesh.py         set "mesh": per-hop cost on a line of four brokers
    distributed.py  set "distributed": map over 3 nodes vs 1, failover times
    scripted.py     sets "qos" and "inproc": the stand-alone bench_*.py scripts
    signing.py      set "signing": end-to-end signatures on against off
    frameworks.py   set "frameworks": no-op jobs/s against Ray (and Celery) tasks

A set is ``async fn(args, work_dir) -> Result``, listed in :data:`BENCHMARKS`;
child processes and meshes of real nodes come from ``scripts/_benchlib.py``.
These modules are imported with ``scripts/`` on ``sys.path`` (as it is when
``bench.py`` runs as a script).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path

from .distributed import bench_distributed
from .foundation import bench_foundation
from .frameworks import bench_frameworks
from .harness import Result
from .mesh import bench_mesh
from .routing import bench_routing
from .scripted import bench_inproc, bench_qos
from .signing import bench_signing

#: Every benchmark set, by name: ``async fn(args, work_dir) -> Result``.
BENCHMARKS: dict[str, Callable[[argparse.Namespace, Path], Awaitable[Result]]] = {
    "foundation": bench_foundation,
    "routing": bench_routing,
    "mesh": bench_mesh,
    "distributed": bench_distributed,
    "qos": bench_qos,
    "inproc": bench_inproc,
    "signing": bench_signing,
    "frameworks": bench_frameworks,
}

__all__ = ["BENCHMARKS"]
