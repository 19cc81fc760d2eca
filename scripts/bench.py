#!/usr/bin/env python3
"""Benchmarks of operone-zmq, each measured against a baseline run at the same time.

DESIGN.md section 11 states the targets as ratios against a raw pyzmq
baseline of the same shape, so a figure is only meaningful next to a
baseline measured in the same run on the same machine::

    python scripts/bench.py                      # the foundation set
    python scripts/bench.py foundation --quick   # a shorter run
    python scripts/bench.py routing mesh distributed --json out.json
    python scripts/bench.py routing --big        # also simulate 10,000 nodes
    python scripts/bench.py --profile /tmp/prof  # cProfile broker, worker, client

The foundation set runs two stacks side by side, both client -> broker ->
worker in three processes, CurveZMQ on the client's TCP hop and ipc:// to
the worker:

* **baseline**: raw pyzmq.  A broker that forwards without decoding
  (frontend ROUTER ``[client, payload]`` -> backend ROUTER ``[worker, client,
  payload]``, round robin), a worker that echoes, and a DEALER client; all
  three on asyncio with *drained* plain sockets (``loop.add_reader`` on the
  ZMQ_FD, then everything queued taken with NOBLOCK in batches, and
  ``ZMQ_EVENTS`` checked after every run because the FD is edge-triggered).
  The raw broker and worker are child processes of this script (hidden
  sub-commands ``_raw-broker`` and ``_raw-worker``).
* **operone**: real ``operone broker start`` and ``operone worker start``
  processes on a fresh home, and an :class:`AsyncClient` in this process
  running the inline ``echo`` tool.

Both clients are driven by the same code: a window of N requests in flight,
refilled from each future's done-callback (no task per job).  Repetitions of
the two stacks alternate, so drift on the machine hits both alike; figures
are medians, "noise" is half the range of the repetitions.  CPU per job is
read from /proc (every thread of each process, ZeroMQ's I/O threads
included), and so is the load other processes put on the machine meanwhile:
a busy machine is named in the notes.

Further sets (each under two minutes; every process they start is stopped):

* **routing**: a full Dijkstra over 1,000 nodes / 5,000 links (DESIGN.md:
  at most 10 ms) against a textbook heapq Dijkstra over the same adjacency,
  a RoutingTable recompute after a changed LSA in an LSDB of that size, and
  the flooding simulator (``operone_zmq.routing.sim``) at 1,000 nodes:
  virtual convergence time and messages per node (10,000 nodes with
  ``--big``: minutes and ~4.4 GB).
* **mesh**: brokers n0 - n1 - n2 - n3 in a line, a worker on each; a client
  of n0 runs echo on n0..n3 (0-3 broker hops): p50 latency and throughput
  per hop (DESIGN.md: at most +150 us per hop, each hop keeps at least half
  the throughput), against raw pyzmq relays chained in front of the raw
  broker (hidden sub-command ``_raw-relay``); and a raw relay in front of
  n0 for one client of operone (``_raw-client-relay``): what a hop that
  decodes nothing adds inside operone's own traffic, so the part of an
  operone hop that is the broker's own shows.
* **distributed**: ``AsyncClient.map`` over 3 worker nodes (from an origin
  without workers) versus one node with one worker, with a CPU-bound tool
  and with ``sleep`` (4 slots per worker, so spreading shows); and failover
  times: SIGKILL of the node running a job with retries (broker and
  worker, or the worker only) to the result from the other node.

Also ``qos`` and ``inproc``, which run ``bench_qos.py`` and ``bench_inproc.py``,
``signing`` (end-to-end signatures on against off), and ``frameworks``:
operone's no-op jobs/s against Ray's task throughput where Ray is installed
(``--ray-python`` names an interpreter that has it), skipped with the reason
where it is not.
Each set is a module of ``scripts/benchsets/`` (its ``__init__`` lists them)
over one harness, ``benchsets/harness.py``; a new set plugs into
:data:`benchsets.BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

import zmq
from benchsets import BENCHMARKS
from benchsets.harness import NOISY_LOAD, Result, machine_busy_seconds, render, say
from benchsets.raw import HIDDEN


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_quiet(limit: float) -> None:
    """Wait up to ``limit`` seconds for the machine to be idle (other work
    below NOISY_LOAD cores over one second)."""
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = machine_busy_seconds(), time.perf_counter()
        time.sleep(1.0)
        b1 = machine_busy_seconds()
        if b0 is None or b1 is None:
            return
        load = (b1 - b0) / (time.perf_counter() - t0)
        if load <= NOISY_LOAD:
            return
        if time.monotonic() > deadline:
            say(f"the machine is still busy ({load:.2f} cores); measuring anyway")
            return
        say(f"waiting for the machine to be idle ({load:.2f} cores busy)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in HIDDEN:
        return HIDDEN[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=f"sets: {', '.join(BENCHMARKS)} (default: foundation)")
    parser.add_argument("sets", nargs="*", metavar="SET", help="benchmark sets to run")
    parser.add_argument("--quick", action="store_true", help="fewer jobs and repetitions")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per figure, of which the median (default 5; 3 quick)")
    parser.add_argument("--window", type=int, default=100, help="jobs in flight (throughput)")
    parser.add_argument("--bulk-window", type=int, default=16,
                        help="64 KiB jobs in flight (bulk)")
    parser.add_argument("--worker-concurrency", type=int, default=None,
                        help="operone worker --concurrency (default: the config's, 128)")
    parser.add_argument("--raw-frames", type=int, choices=(1, 2, 3), default=1,
                        help="frames per baseline request: 1 (default, as DESIGN.md's"
                             " baseline), 2, or 3 for operone's shape (tag, header, body)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to leave the"
                             " machine idle (default: do not wait)")
    parser.add_argument("--big", action="store_true",
                        help="routing: also simulate 10,000 nodes (~6 minutes on 2 cores,"
                             " ~4.4 GB)")
    parser.add_argument("--failover-heartbeat", type=float, default=0.2, metavar="SECONDS",
                        help="distributed: broker.heartbeat_interval of the failover"
                             " nodes (default 0.2)")
    parser.add_argument("--ray-python", metavar="PYTHON", default=None,
                        help="frameworks: the interpreter that has Ray (default: this one)")
    parser.add_argument("--json", type=Path, help="also save every figure here")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run operone's broker and worker under cProfile and profile"
                             " its client; .prof files go to DIR (figures get slower)")
    args = parser.parse_args(argv)
    sets = args.sets or ["foundation"]
    unknown = [s for s in sets if s not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        parser.error(f"--profile: {args.profile} exists and is not a directory")
    if sys.platform == "win32":
        parser.error("the benchmarks need ipc:// and add_reader (Linux or macOS)")
    # The loop operone's daemons run on (aio/runtime.run_service); the raw
    # baselines and the clients in this process run on asyncio's.
    from operone_zmq.aio.runtime import event_loop_choice
    from operone_zmq.errors import ConfigError

    try:
        daemons = event_loop_choice()
    except ConfigError as exc:
        parser.error(str(exc))

    # SIGTERM unwinds like Ctrl-C, so every child process is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    results: list[Result] = []
    t0 = time.monotonic()
    try:
        for name in sets:
            with tempfile.TemporaryDirectory(prefix=f"operone-bench-{name}-") as tmp:
                say(f"running {name} ...")
                results.append(asyncio.run(BENCHMARKS[name](args, Path(tmp))))
    except KeyboardInterrupt:
        say("interrupted; every process it started is stopped")
        return 130
    except (RuntimeError, TimeoutError) as exc:  # a child failed to start or a phase hung
        say(f"error: {exc}")
        return 1
    elapsed = time.monotonic() - t0
    from _benchlib import DAEMON_BUILDS

    import operone_zmq

    def build(n: int) -> str:
        return f"compiled: {n} modules" if n else "pure Python"

    n_compiled = len(operone_zmq.compiled_modules())
    source = f"{Path(operone_zmq.__file__).parent} ({build(n_compiled)})"
    # What the daemons imported, from their ready files: the same build, or
    # the figures are not of the build the header names.
    builds = sorted(set(DAEMON_BUILDS.values()))
    if builds and builds != [n_compiled]:
        odd = ", ".join(f"{k}: {build(v)}" for k, v in DAEMON_BUILDS.items() if v != n_compiled)
        source += f"; DAEMONS DIFFER ({odd})"
    elif builds:
        source += "; its daemons the same (their ready files)"
    print(f"operone-zmq benchmarks: {platform.node()}, {os.cpu_count()} CPUs,"
          f" Python {platform.python_version()}, pyzmq {zmq.__version__},"
          f" libzmq {zmq.zmq_version()}, {elapsed:.0f} s; operone_zmq from {source};"
          f" its daemons on {daemons} (OPERONE_EVENT_LOOP), baselines and clients on asyncio")
    for r in results:
        print()
        print(render(r))
    if args.profile is not None:
        for what in ("broker", "worker", "client"):
            f = args.profile / f"{what}.prof"
            if f.exists():
                print(f"\n== cProfile, {what} (top 15 by own time)")
                st = pstats.Stats(str(f), stream=sys.stdout)
                st.sort_stats("tottime").print_stats(15)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "operone_zmq": source,
            "daemon_event_loop": daemons,
            "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "pyzmq": zmq.__version__,
                        "libzmq": zmq.zmq_version()},
            "elapsed_s": elapsed,
            "sets": {r.name: {"rows": [{**r_.__dict__, "ratio": r_.ratio} for r_ in r.rows],
                              "notes": r.notes, "data": r.data} for r in results},
        }, indent=2, default=str))
        print(f"\nsaved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
