#!/usr/bin/env python3
"""Time a full Dijkstra over a random connected graph (default 1,000 nodes, 5,000 links).

Prints the median of several runs of ``shortest_paths`` (the complete
result, paths included), of the bare search, and of building the graph
from LSAs under the both-ends rule.  DESIGN.md section 11's target: the
full Dijkstra at 1,000 nodes / 5,000 links in at most 10 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

from operone_zmq.routing.dijkstra import Graph, _dijkstra, shortest_paths
from operone_zmq.routing.lsa import LSA, LinkInfo
from operone_zmq.routing.sim import random_topology

#: The performance target from DESIGN.md section 11, in ms.
TARGET_MS = 10.0


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--links", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=31)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    nodes, edges = random_topology(args.nodes, links=args.links, seed=args.seed)
    costs = {e: rng.uniform(0.1, 50.0) for e in edges}
    by_node: dict[str, list[LinkInfo]] = {n: [] for n in nodes}
    for (a, b), cost in costs.items():
        by_node[a].append(LinkInfo(b, cost))
        by_node[b].append(LinkInfo(a, cost))
    lsas = [LSA(n, 1, tuple(links)) for n, links in by_node.items()]
    graph = Graph.from_lsas(lsas)
    assert len(graph.edges) == args.links, len(graph.edges)
    source = nodes[0]

    full = _median_ms(lambda: shortest_paths(graph, source), args.runs)
    bare = _median_ms(lambda: _dijkstra(graph.adjacency, source), args.runs)
    build = _median_ms(lambda: Graph.from_lsas(lsas), max(5, args.runs // 3))
    print(f"graph: {args.nodes} nodes, {args.links} links (seed {args.seed})")
    print(f"shortest_paths (full result, paths included): median {full:.2f} ms")
    print(f"bare Dijkstra search:                         median {bare:.2f} ms")
    print(f"graph build from LSAs (both-ends rule):       median {build:.2f} ms")
    print(f"target <= {TARGET_MS:.0f} ms: {'met' if full <= TARGET_MS else 'MISSED'}")
    return 0 if full <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
