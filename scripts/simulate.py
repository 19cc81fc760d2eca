#!/usr/bin/env python3
"""Simulate link-state flooding over N brokers: convergence time and flooding cost.

For each ``--nodes`` value: build a seeded random connected mesh of average
degree ``--degree``, start every broker at once and run the virtual network
(``operone_zmq.routing.sim``) until every database agrees; then cut one link,
kill one broker and heal the cut, measuring each reconvergence.  Prints, per
phase, the virtual convergence time, messages and LSAs sent per node, and the
real time the simulation took.

With ``--churn SECONDS``, each mesh size is also run with *measured* link
costs (RTT samples with event-loop noise: 1-5 ms plus 5 % spikes of
5-30 ms) under the broker's policy before damping (``legacy``) and with
``operone_zmq.routing.damping`` (``damped``), printing LSAs originated and
sent, SPF runs and route flips per broker (``--churn-only`` skips the
cut/kill/heal phases).

Examples::

    python scripts/simulate.py --nodes 100 1000 10000 --degree 4 --seed 1
    python scripts/simulate.py --nodes 10 25 50 --churn 120 --churn-only \
        --delay-min 0.025 --delay-max 0.05     # 50 brokers on one machine
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time

from operone_zmq.routing.sim import (
    DEFAULT_DELAY,
    DEFAULT_PACING,
    NOISE_PROFILES,
    POLICIES,
    ChurnReport,
    SimReport,
    Simulator,
)

#: Routes walked hop by hop after convergence are capped so that the check
#: (one routing-table computation per node on each walked path) stays far
#: cheaper than the simulation itself at 10,000 nodes.
MAX_CHECKED_PAIRS = 50


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def _build(n: int, args: argparse.Namespace) -> Simulator:
    return Simulator.random(
        n,
        args.degree,
        seed=args.seed,
        delay=(args.delay_min / 1000, args.delay_max / 1000),
        pacing=args.pacing / 1000,
        detect_delay=args.detect_delay / 1000,
        wall_clock=time.perf_counter,
    )


def run_churn(n: int, args: argparse.Namespace) -> list[ChurnReport]:
    """Measure LSA and SPF churn under each policy on the same mesh."""
    reports = []
    for policy in POLICIES:
        sim = _build(n, args)
        sim.start()
        reports.append(sim.measure_churn(args.churn, policy, noise=NOISE_PROFILES[args.noise]))
        print("  " + reports[-1].summary())
    return reports


def run_one(n: int, args: argparse.Namespace) -> list[SimReport]:
    """Simulate one mesh size; return the report of each phase."""
    t0 = time.perf_counter()
    sim = _build(n, args)
    print(f"\n== {n} nodes, {len(sim.links)} links (built in {time.perf_counter() - t0:.1f} s)")
    reports = [sim.start()]
    print("  " + reports[-1].summary())
    pairs = min(MAX_CHECKED_PAIRS, max(3, 20_000 // n))
    t1 = time.perf_counter()
    sim.check_forwarding(sim.sample_pairs(pairs))
    print(
        f"  forwarding checked hop by hop on {pairs} random routes "
        f"({time.perf_counter() - t1:.1f} s): consistent, loop-free"
    )

    rng = random.Random(args.seed)
    # Cut a link whose ends both keep another link, so the mesh stays connected
    # unless the link was a bridge (then the phase shows a partition).
    candidates = [
        (a, b)
        for a, b in sim.links
        if len(sim.nodes[a].neighbors) > 1 and len(sim.nodes[b].neighbors) > 1
    ]
    a, b = rng.choice(candidates or list(sim.links))
    reports.append(sim.cut_link(a, b))
    print("  " + reports[-1].summary())
    victim = rng.choice(sorted(x for x in sim.nodes if x not in (a, b)))
    reports.append(sim.kill_node(victim))
    print("  " + reports[-1].summary())
    reports.append(sim.add_link(a, b))
    print("  " + reports[-1].summary())
    components = sim.components()
    print(f"  components after the phases: {len(components)} (largest {len(components[0])} nodes)")
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="mesh sizes to simulate (default: 100 1000)",
    )
    parser.add_argument(
        "--degree", type=float, default=4.0, help="average links per broker (default 4)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pacing",
        type=float,
        default=DEFAULT_PACING * 1000,
        help="flood pacing in ms (default %(default)s)",
    )
    parser.add_argument(
        "--delay-min",
        type=float,
        default=DEFAULT_DELAY[0] * 1000,
        help="smallest one-way link delay in ms (default %(default)s)",
    )
    parser.add_argument(
        "--delay-max",
        type=float,
        default=DEFAULT_DELAY[1] * 1000,
        help="largest one-way link delay in ms (default %(default)s)",
    )
    parser.add_argument(
        "--detect-delay",
        type=float,
        default=0.0,
        help="ms before a link failure is noticed (default 0)",
    )
    parser.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="also measure LSA churn with noisy RTTs for this many virtual seconds",
    )
    parser.add_argument(
        "--noise",
        choices=sorted(NOISE_PROFILES),
        default="quiet",
        help="RTT noise profile for --churn (default quiet)",
    )
    parser.add_argument(
        "--churn-only", action="store_true", help="skip the start/cut/kill/heal phases"
    )
    args = parser.parse_args(argv)

    # The simulator allocates ~10^8 long-lived objects at 10,000 nodes and
    # creates no reference cycles worth collecting; full collections over
    # that heap would dominate the run time.
    gc.disable()
    summary: list[tuple[int, SimReport]] = []
    churn: list[ChurnReport] = []
    ok = True
    for n in args.nodes:
        if not args.churn_only:
            for report in run_one(n, args):
                summary.append((n, report))
                ok = ok and report.converged
        if args.churn > 0:
            print(f"\n== churn, {n} nodes, {args.churn:g} s of {args.noise} RTT noise")
            churn += run_churn(n, args)
        gc.collect()

    if churn:
        print("\nnodes  policy   LSAs orig/s/node  LSAs sent/s/node  SPF/s/node  flips/min/node")
        for c in churn:
            print(
                f"{c.nodes:>5}  {c.policy:<7}  {c.originated_per_s:>16.3f}  "
                f"{c.sent_per_s:>16.2f}  {c.spf_per_s:>10.2f}  {c.route_flips_per_min:>14.2f}"
            )
    if not summary:
        return 0 if ok else 1

    print("\nnodes  phase            converged  time (ms)  msgs/node  LSAs/node  wall (s)")
    for n, r in summary:
        phase = r.action.split()[0]
        print(
            f"{n:>5}  {phase:<15}  {'yes' if r.converged else 'NO':<9}  "
            f"{r.convergence_time * 1000:>9.1f}  {r.messages_per_node:>9.1f}  "
            f"{r.lsas_per_node:>9.1f}  {r.wall_seconds:>8.2f}"
        )
    peak = _peak_rss_mb()
    if peak is not None:
        print(f"peak memory: {peak:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
